<?php

declare(strict_types=1);

namespace WsBridge\Tests\Hyperf;

use PHPUnit\Framework\TestCase;
use WsBridgeFixtures\Hyperf\TestContainer;
use WsBridgeFixtures\Hyperf\TestFrame;
use WsBridge\Hyperf\HyperfSender;
use WsBridge\Hyperf\HyperfSenderFactory;
use WsBridge\Sender;
use WsBridge\Tests\Support\RecordingRPC;

/**
 * HyperfSender against the fixture of hyperf/hyperf
 * src/websocket-server/src/Sender.php: a signature that does not match
 * Hyperf's would be a fatal error when the class loads, so loading it is
 * the first test; then every call site of Hyperf's Sender must reach the
 * bridge, never Hyperf's own code (whose fixture bodies throw).
 */
final class HyperfSenderTest extends TestCase
{
    private RecordingRPC $rpc;
    private TestContainer $container;
    private HyperfSender $sender;

    public static function setUpBeforeClass(): void
    {
        require_once \dirname(__DIR__) . '/fixtures/hyperf/load.php';
    }

    protected function setUp(): void
    {
        $this->rpc = new RecordingRPC(['Sender.Check' => static fn (array $a): bool => $a['fd'] === 5]);
        $this->container = new TestContainer([Sender::class => new Sender($this->rpc)]);
        $this->sender = (new HyperfSenderFactory())($this->container);
    }

    public function testItLoadsAgainstHyperfsSender(): void
    {
        self::assertTrue(\class_exists(HyperfSender::class));
        self::assertInstanceOf(\Hyperf\WebSocketServer\Sender::class, $this->sender);
        self::assertInstanceOf(HyperfSender::class, $this->sender);
    }

    public function testEveryMethodIsOverriddenWithHyperfsSignature(): void
    {
        $parent = new \ReflectionClass(\Hyperf\WebSocketServer\Sender::class);
        $child = new \ReflectionClass(HyperfSender::class);
        $checked = [];
        foreach ($parent->getMethods() as $method) {
            if ($method->isPrivate() || $method->getName() === 'getServer') {
                continue; // getServer() only serves the methods overridden here
            }
            $mine = $child->getMethod($method->getName());
            $name = $method->getName();
            self::assertSame(HyperfSender::class, $mine->getDeclaringClass()->getName(), "{$name} is not overridden");
            self::assertSame(self::signature($method, $mine), self::signature($mine, $mine), $name);
            $checked[] = $name;
        }
        \sort($checked);
        self::assertSame(['__call', '__construct', 'check', 'getFdAndMethodFromProxyMethod', 'getResponse', 'getResponses',
            'proxy', 'pushFrame', 'sendPipeMessage', 'setResponse', 'setWorkerId'], $checked);
    }

    /**
     * Each version's Sender in a process of its own (the two cannot be
     * declared in one): HyperfSender must load against both, since an
     * incompatible signature is a fatal error, and push through the bridge.
     *
     * @return iterable<string, array{string}>
     */
    public static function hyperfVersions(): iterable
    {
        yield 'Hyperf 3.1 (v3.1.71)' => ['3.1'];
        yield 'Hyperf 3.2 (v3.2.4)' => ['3.2'];
    }

    /**
     * @dataProvider hyperfVersions
     */
    public function testItLoadsUnderEachHyperfVersion(string $version): void
    {
        $script = <<<'PHP'
            require $argv[1];
            require $argv[2];
            $rpc = new WsBridge\Tests\Support\RecordingRPC();
            $container = new WsBridgeFixtures\Hyperf\TestContainer([WsBridge\Sender::class => new WsBridge\Sender($rpc)]);
            $sender = (new WsBridge\Hyperf\HyperfSenderFactory())($container);
            $call = new ReflectionMethod(Hyperf\WebSocketServer\Sender::class, '__call');
            echo json_encode([
                'parent __call' => (string) $call->getReturnType(),
                'push' => $sender->push(5, 'hi'),
                'disconnect' => $sender->disconnect(5, 4000, 'bye'),
                'calls' => $rpc->lines(),
            ]);
            PHP;
        $cmd = [\PHP_BINARY, '-d', 'display_errors=stderr', '-r', $script, \dirname(__DIR__, 2) . '/vendor/autoload.php',
            \dirname(__DIR__) . '/fixtures/hyperf/load.php'];
        $env = ['WSBRIDGE_HYPERF_VERSION' => $version, 'PATH' => (string) \getenv('PATH')];
        $process = \proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, null, $env);
        $stdout = (string) \stream_get_contents($pipes[1]);
        $stderr = (string) \stream_get_contents($pipes[2]);
        self::assertSame(0, \proc_close($process), $stdout . $stderr);
        self::assertSame([
            'parent __call' => $version === '3.1' ? '' : 'mixed',
            'push' => true,
            'disconnect' => true,
            'calls' => ['Sender.Push {"fd":5,"data":"hi"}', 'Sender.Disconnect {"fd":5,"code":4000,"reason":"bye"}'],
        ], \json_decode($stdout, true), $stdout . $stderr);
    }

    /**
     * $m's signature, with a parameter type only where $child declares one
     * (an untyped parameter accepts what any version's type does).
     */
    private static function signature(\ReflectionMethod $m, \ReflectionMethod $child): string
    {
        $childParams = $child->getParameters();
        $params = \array_map(static function (\ReflectionParameter $p) use ($childParams): string {
            $pos = $p->getPosition();
            $typed = $p->hasType() && (!isset($childParams[$pos]) || $childParams[$pos]->hasType());
            return ($typed ? $p->getType() . ' ' : '') . ($p->isVariadic() ? '...' : '') . '$' . $p->getName()
                . ($p->isDefaultValueAvailable() ? ' = ' . \var_export($p->getDefaultValue(), true) : '');
        }, $m->getParameters());
        // A return type the parent leaves out may be added (3.1's __call has none; 3.2's is mixed).
        $return = $m->hasReturnType() ? (string) $m->getReturnType()
            : ($child->hasReturnType() ? (string) $child->getReturnType() : '');
        return ($m->isPublic() ? 'public ' : 'protected ') . ($m->isStatic() ? 'static ' : '') . "function {$m->getName()}("
            . \implode(', ', $params) . ')' . ($return !== '' ? ': ' . $return : '');
    }

    public function testThePropertiesHyperfSetsAreKept(): void
    {
        $container = new \ReflectionProperty(\Hyperf\WebSocketServer\Sender::class, 'container');
        self::assertSame($this->container, $container->getValue($this->sender), "Hyperf's constructor ran");
        $this->sender->setWorkerId(3);
        self::assertSame(3, (new \ReflectionProperty(\Hyperf\WebSocketServer\Sender::class, 'workerId'))->getValue($this->sender));
        $this->sender->setResponse(6, 'a response');
        self::assertSame('a response', $this->sender->getResponse(6));
        self::assertSame($this->container->get(Sender::class), $this->sender->bridge());
        self::assertSame([], $this->rpc->calls);
        $this->sender->setResponse(6, null);
        self::assertNull($this->sender->getResponse(6), 'fd 6 is not open on the bridge');
        self::assertSame(['Sender.Check {"fd":6}'], $this->rpc->lines());
    }

    /**
     * Hyperf's coroutine server keeps a Swoole\Http\Response per
     * connection (getResponse($fd)->push($data)); behind the bridge every
     * open fd has one that sends through it.
     */
    public function testTheResponsesOfTheCoroutineServer(): void
    {
        $rpc = new RecordingRPC([
            'Sender.Check' => static fn (array $a): bool => $a['fd'] === 5,
            'Sender.Connections' => static fn (array $a): array => $a['after'] === 0
                ? ['connections' => [['fd' => 5], ['fd' => 9]], 'next_after' => 9]
                : ['connections' => [], 'next_after' => null],
        ]);
        $sender = (new HyperfSenderFactory())(new TestContainer([Sender::class => new Sender($rpc)]));
        $response = $sender->getResponse(5);
        self::assertInstanceOf(\Swoole\Http\Response::class, $response);
        self::assertSame(5, $response->fd);
        self::assertTrue($response->push('hi'));
        self::assertTrue($response->close());
        self::assertNull($sender->getResponse(6));
        $all = $sender->getResponses();
        self::assertSame([5, 9], \array_keys($all));
        self::assertSame(9, $all[9]->fd);
        self::assertSame([
            'Sender.Check {"fd":5}',
            'Sender.Push {"fd":5,"data":"hi","opcode":1,"finish":true}',
            'Sender.Disconnect {"fd":5,"code":1000}',
            'Sender.Check {"fd":6}',
            'Sender.Connections {"after":0,"limit":500}',
            'Sender.Connections {"after":9,"limit":500}',
        ], $rpc->lines());
    }

    public function testPushAndDisconnectThroughCall(): void
    {
        self::assertTrue($this->sender->push(5, 'hi'));
        self::assertTrue($this->sender->push(5, "\x00\xff", 2, true));
        self::assertTrue($this->sender->push(5, 'part', 1, 0));   // Swoole flags without FIN
        self::assertTrue($this->sender->push(5, 'last', 0, 1));   // SWOOLE_WEBSOCKET_FLAG_FIN
        self::assertTrue($this->sender->push('5', 'fd as a string'));
        self::assertTrue($this->sender->push(fd: 5, data: 'named'));
        self::assertTrue($this->sender->push(5, 'named finish', finish: false));
        self::assertTrue($this->sender->disconnect(5, 4000, 'bye'));
        self::assertTrue($this->sender->disconnect(5));
        self::assertTrue($this->sender->disconnect(fd: 5, reason: 'r'));
        self::assertSame([
            'Sender.Push {"fd":5,"data":"hi"}',
            'Sender.Push {"fd":5,"data":"AP8=","opcode":2,"encoding":"base64","finish":true}',
            'Sender.Push {"fd":5,"data":"part","opcode":1,"finish":false}',
            'Sender.Push {"fd":5,"data":"last","opcode":0,"finish":true}',
            'Sender.Push {"fd":5,"data":"fd as a string"}',
            'Sender.Push {"fd":5,"data":"named"}',
            'Sender.Push {"fd":5,"data":"named finish","finish":false}',
            'Sender.Disconnect {"fd":5,"code":4000,"reason":"bye"}',
            'Sender.Disconnect {"fd":5}',
            'Sender.Disconnect {"fd":5,"reason":"r"}',
        ], $this->rpc->lines());
    }

    public function testTheBridgesAnswerIsReturned(): void
    {
        $rpc = new RecordingRPC(['Sender.Push' => false, 'Sender.Disconnect' => false]);
        $sender = (new HyperfSenderFactory())(new TestContainer([Sender::class => new Sender($rpc)]));
        self::assertFalse($sender->push(99, 'to a closed fd'));
        self::assertFalse($sender->disconnect(99));
        self::assertFalse($sender->proxy(99, 'push', [99, 'x']));
        $strict = (new HyperfSenderFactory())(new TestContainer([Sender::class => (new Sender($rpc))->withStrict()]));
        $this->expectException(\WsBridge\Exception\NotDeliveredException::class);
        $strict->push(99, 'to a closed fd');
    }

    public function testCheckProxyAndPipeMessages(): void
    {
        self::assertTrue($this->sender->check(5));
        self::assertFalse($this->sender->check(6));
        self::assertFalse($this->sender->check('not an fd'));
        // The listener of pipe messages calls proxy($fd, $method, $arguments).
        self::assertTrue($this->sender->proxy(5, 'push', [5, 'via proxy', 1, true]));
        self::assertTrue($this->sender->proxy(5, 'disconnect', [5, 1001, 'going']));
        $pipe = new \ReflectionMethod(HyperfSender::class, 'sendPipeMessage');
        $pipe->invoke($this->sender, 'push', [5, 'no pipe: straight to the bridge']);
        self::assertSame([
            'Sender.Check {"fd":5}',
            'Sender.Check {"fd":6}',
            'Sender.Push {"fd":5,"data":"via proxy","opcode":1,"finish":true}',
            'Sender.Disconnect {"fd":5,"code":1001,"reason":"going"}',
            'Sender.Push {"fd":5,"data":"no pipe: straight to the bridge"}',
        ], $this->rpc->lines());
    }

    public function testPushFrame(): void
    {
        self::assertTrue($this->sender->pushFrame(5, new TestFrame(1, 'text frame')));
        self::assertTrue($this->sender->pushFrame(5, new TestFrame(2, "\x01\x02", false)));
        self::assertTrue($this->sender->pushFrame(5, new TestFrame(8, \pack('n', 4001) . 'closing')));
        self::assertTrue($this->sender->pushFrame(5, new TestFrame(8, '')));
        self::assertSame([
            'Sender.Push {"fd":5,"data":"text frame","opcode":1,"finish":true}',
            'Sender.Push {"fd":5,"data":"AQI=","opcode":2,"encoding":"base64","finish":false}',
            'Sender.Disconnect {"fd":5,"code":4001,"reason":"closing"}',
            'Sender.Disconnect {"fd":5}',
        ], $this->rpc->lines());
    }

    public function testOnlyPushAndDisconnectAreProxied(): void
    {
        self::assertSame([7, 'push'], $this->sender->getFdAndMethodFromProxyMethod('push', ['7', 'x']));
        self::assertSame([7, 'disconnect'], $this->sender->getFdAndMethodFromProxyMethod('disconnect', ['fd' => 7]));
        foreach (
            [
            static fn (HyperfSender $s) => $s->broadcast('x'),
            static fn (HyperfSender $s) => $s->getFdAndMethodFromProxyMethod('close', [1]),
            static fn (HyperfSender $s) => $s->proxy(1, 'exist', [1]),
            ] as $call
        ) {
            try {
                $call($this->sender);
                self::fail('no exception');
            } catch (\WsBridge\Exception\UnsupportedException $e) {
                self::assertMatchesRegularExpression('/^Method \[\w+\] is not allowed\.$/', $e->getMessage());
            }
        }
        try {
            $this->sender->push();
            self::fail('no exception');
        } catch (\WsBridge\Exception\InvalidArgumentException $e) {
            self::assertSame('push() needs an fd', $e->getMessage());
        }
        self::assertSame([], $this->rpc->calls);
    }
}
