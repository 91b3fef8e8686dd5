<?php

declare(strict_types=1);

namespace WsBridge\Tests\Hyperf;

use App\Controller\DocsBasicController;
use App\Controller\CoroutineStyleController;
use App\Controller\DocsContextController;
use App\Controller\EngineExampleController;
use App\Controller\HandshakeRequestController;
use App\Controller\TypedServerController;
use PHPUnit\Framework\TestCase;
use WsBridge\Tests\Support\Bridge;
use WsBridge\Tests\Support\TextClient;
use WsBridge\Tests\Support\Worker;

/**
 * End to end, the controllers of Hyperf's own documentation, unchanged,
 * behind the real bridge: WebSocket clients talk to the bridge, the bridge
 * posts their events to a long-running PHP worker (as a Hyperf worker
 * receives them), and the controller answers through its $server.
 */
final class DocsControllersTest extends TestCase
{
    private ?Bridge $bridge = null;
    private ?Worker $worker = null;

    protected function tearDown(): void
    {
        // The bridge first: it delivers its last close events to the worker as it stops.
        if ($this->bridge !== null) {
            self::assertSame(0, $this->bridge->stop());
            $this->bridge = null;
        }
        $this->worker = null;
    }

    /**
     * @param array<string, string> $env
     */
    private function start(string $controller, array $env = []): void
    {
        $addr = Worker::freeAddr();
        $this->bridge = new Bridge(['-events-url', "http://{$addr}/"]);
        $this->worker = new Worker($addr, [$this->bridge->rpcAddr, $controller], $env);
    }

    private function assertNoControllerErrors(): void
    {
        self::assertStringNotContainsString('controller:', (string) $this->worker?->log());
    }

    public function testTheEngineResponseController(): void
    {
        $this->start(DocsBasicController::class);
        $c = new TextClient($this->bridge->wsUrl . '/');
        self::assertSame('Opened', $c->receiveText(), (string) $this->worker->log());
        $c->send('hello');
        self::assertSame('Recv: hello', $c->receiveText());
        $c->send('again');
        self::assertSame('Recv: again', $c->receiveText());
        $this->assertNoControllerErrors();
    }

    public function testTheConnectionContextControllerWithTwoUsers(): void
    {
        $this->start(DocsContextController::class);
        $alice = new TextClient($this->bridge->wsUrl . '/', ['Cookie' => 'username=alice']);
        $bob = new TextClient($this->bridge->wsUrl . '/', ['Cookie' => 'username=bob']);
        // Give both opens time to be dispatched before the first message.
        \usleep(300000);
        $alice->send('who am I?');
        self::assertSame('Username: alice', $alice->receiveText());
        $bob->send('who am I?');
        self::assertSame('Username: bob', $bob->receiveText());
        $alice->send('and now?');
        self::assertSame('Username: alice', $alice->receiveText());
        $this->assertNoControllerErrors();
    }

    /**
     * Hyperf's coroutine server style: $server is the connection's
     * Swoole\Http\Response. The callbacks of hyperf/engine's own example,
     * unchanged: push($data) answers this connection, close() in onClose.
     */
    public function testTheEngineExampleInTheCoroutineStyle(): void
    {
        $this->start(EngineExampleController::class, ['WSBRIDGE_TEST_SERVER_STYLE' => 'coroutine']);
        $c = new TextClient($this->bridge->wsUrl . '/');
        $fd = $this->bridge->waitForFd();
        self::assertSame("opened: {$fd}", $c->receiveText(), (string) $this->worker->log());
        $c->send('hello');
        self::assertSame('received: hello', $c->receiveText());
        $c->send('again');
        self::assertSame('received: again', $c->receiveText());
        $c->close();
        $deadline = \microtime(true) + 10;
        while (!\str_contains($this->worker->log(), "closed: {$fd}") && \microtime(true) < $deadline) {
            \usleep(20000);
        }
        self::assertStringContainsString("closed: {$fd}", $this->worker->log(), 'onClose ran, and its close() of a closed connection did not throw');
        $this->assertNoControllerErrors();
    }

    /**
     * The documentation's engine Response controller works in both styles:
     * under the coroutine style it pushes through the Swoole\Http\Response.
     */
    public function testTheEngineResponseControllerInTheCoroutineStyle(): void
    {
        $this->start(DocsBasicController::class, ['WSBRIDGE_TEST_SERVER_STYLE' => 'coroutine']);
        $c = new TextClient($this->bridge->wsUrl . '/');
        self::assertSame('Opened', $c->receiveText(), (string) $this->worker->log());
        $c->send('hello');
        self::assertSame('Recv: hello', $c->receiveText());
        $this->assertNoControllerErrors();
    }

    public function testACoroutineStyleController(): void
    {
        $this->start(CoroutineStyleController::class, ['WSBRIDGE_TEST_SERVER_STYLE' => 'coroutine']);
        $a = new TextClient($this->bridge->wsUrl . '/');
        $fdA = $this->bridge->waitForFd();
        self::assertSame("hello {$fdA} same-fd", $a->receiveText(), (string) $this->worker->log());
        $b = new TextClient($this->bridge->wsUrl . '/');
        $hello = $b->receiveText();
        self::assertMatchesRegularExpression('/^hello (\d+) same-fd$/', $hello);
        $fdB = (int) \explode(' ', $hello)[1];
        self::assertNotSame($fdA, $fdB);

        $a->send('engine');
        self::assertSame("engine {$fdA}", $a->receiveText());
        $a->send('parts'); // Swoole's flags: a message in two frames
        self::assertSame('ab', $a->receiveText());
        $a->send('writable');
        self::assertSame('writable true', $a->receiveText());
        $a->send("to {$fdB}"); // another connection, through the bridge's server
        self::assertSame("from {$fdA}", $b->receiveText());
        self::assertSame('sent true', $a->receiveText());
        $b->send('bye'); // close() without an fd closes this connection only
        self::assertSame(8, $b->receive()[0], 'close() closes the connection');
        $a->send("to {$fdB}");
        self::assertSame('sent false', $a->receiveText());
        $a->send('still here');
        self::assertSame('echo still here', $a->receiveText());
        $this->assertNoControllerErrors();
    }

    /**
     * Inside onOpen, Hyperf's injected RequestInterface is the handshake
     * (query, headers, cookies, path, remote address), for each connection
     * its own; after onOpen it is no longer current.
     */
    public function testTheInjectedRequestIsTheHandshakeInOnOpen(): void
    {
        $this->start(HandshakeRequestController::class);
        $alice = new TextClient($this->bridge->wsUrl . '/?token=abc&room=7', ['X-App' => 'mobile', 'Cookie' => 'session=s1']);
        $open = \json_decode($alice->receiveText(), true);
        self::assertSame([
            'token' => 'abc',
            'query' => ['token' => 'abc', 'room' => '7'],
            'app' => 'mobile',
            'path' => '/',
            'remote' => '127.0.0.1',
            'cookie' => 's1',
        ], $open, (string) $this->worker->log());
        $bob = new TextClient($this->bridge->wsUrl . '/?token=xyz');
        $open = \json_decode($bob->receiveText(), true);
        self::assertSame('xyz', $open['token'], 'not the first handshake\'s cached input');
        self::assertSame(['token' => 'xyz'], $open['query']);
        self::assertSame('none', $open['app']);
        self::assertSame('none', $open['cookie']);
        $alice->send('later');
        self::assertSame(['current' => 'none'], \json_decode($alice->receiveText(), true), 'the handshake is current in onOpen only');
        $this->assertNoControllerErrors();
    }

    public function testTheTypedServerController(): void
    {
        $this->start(TypedServerController::class);
        $c = new TextClient($this->bridge->wsUrl . '/');
        self::assertSame('hello 127.0.0.1 ws=3', $c->receiveText(), (string) $this->worker->log());
        $c->send('who');
        self::assertSame('port set exist=true established=true gone=false', $c->receiveText());
        $c->send('count');
        self::assertSame('count=1 mine=true', $c->receiveText());
        $c->send('parts');
        self::assertSame('ab', $c->receiveText());
        $c->send('list'); // foreach over $server->connections: Sender.Connections, page by page
        self::assertSame('fds=1 has-me=true', $c->receiveText());
        $c->send('bye');
        self::assertSame(8, $c->receive()[0], 'close() closes the connection');
    }
}
