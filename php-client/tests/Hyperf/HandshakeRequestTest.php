<?php

declare(strict_types=1);

namespace WsBridge\Tests\Hyperf;

use App\Controller\HandshakeRequestController;
use Hyperf\Context\Context;
use Hyperf\HttpServer\Request;
use PHPUnit\Framework\TestCase;
use Psr\Http\Message\ServerRequestInterface;
use WsBridge\Events\EventHandler;
use WsBridge\Sender;
use WsBridge\Tests\Support\RecordingRPC;
use WsBridgeFixtures\Hyperf\TestServerRequest;

/**
 * The handshake as Hyperf's current request while onOpen runs, and the
 * events POST's request, with Hyperf\HttpServer\Request's caches, put back
 * after it (the fixtures of hyperf/hyperf v3.1.71 src/context and
 * src/http-server).
 */
final class HandshakeRequestTest extends TestCase
{
    public static function setUpBeforeClass(): void
    {
        require_once \dirname(__DIR__) . '/fixtures/hyperf/load.php';
    }

    protected function tearDown(): void
    {
        foreach (\array_keys(Context::getContainer()) as $key) {
            Context::destroy($key);
        }
    }

    private const OPEN = '{"node":0,"events":[{"type":"open","fd":4,"seq":1,"time":5000,"path":"/chat","query":"token=abc","headers":{"X-App":["web"]},"remote_addr":"10.0.0.9:5555"}]}';

    public function testTheEventsPostIsPutBack(): void
    {
        $post = TestServerRequest::fromSwoole(self::swooleRequest(['token' => 'of-the-post']));
        Context::set(ServerRequestInterface::class, $post);
        $injected = new Request();
        self::assertSame('of-the-post', $injected->input('token'), 'the parsed input is cached in the context');
        self::assertSame('/events', $injected->getPathInfo());

        $rpc = new RecordingRPC();
        $handler = new EventHandler(new HandshakeRequestController($injected), new Sender($rpc));
        self::assertSame(204, $handler->handle(self::OPEN, ['X-Wsbridge-Kind' => 'events'])->status);
        $pushed = \json_decode($rpc->calls[0][1]['data'], true);
        self::assertSame(['token' => 'abc', 'query' => ['token' => 'abc'], 'app' => 'web', 'path' => '/chat', 'remote' => '10.0.0.9', 'cookie' => 'none'], $pushed);

        self::assertSame($post, Context::get(ServerRequestInterface::class));
        self::assertSame('of-the-post', $injected->input('token'));
        self::assertSame('/events', $injected->getPathInfo());
        self::assertNull(\Hyperf\WebSocketServer\Context::get(ServerRequestInterface::class, null, 4), 'not kept in worker memory');
    }

    public function testItCanBeTurnedOffOrMadeByAFactory(): void
    {
        $rpc = new RecordingRPC();
        $errors = [];
        $handler = (new EventHandler(new HandshakeRequestController(), new Sender($rpc)))->withHandshakeRequest(false)
            ->withErrorHandler(static function (\Throwable $e) use (&$errors): void {
                $errors[] = $e;
            });
        self::assertSame(204, $handler->handle(self::OPEN, ['X-Wsbridge-Kind' => 'events'])->status);
        self::assertCount(1, $errors, 'with no current request, Hyperf\'s RequestContext::get() fails');
        self::assertInstanceOf(\TypeError::class, $errors[0]);
        self::assertStringContainsString('RequestContext::get()', $errors[0]->getMessage());
        self::assertSame([], $rpc->calls);
        $made = [];
        $handler = $handler->withHandshakeRequest(static function (\Swoole\Http\Request $r) use (&$made): object {
            $made[] = $r->server['request_uri'];
            return TestServerRequest::fromSwoole($r);
        });
        self::assertSame(204, $handler->handle(self::OPEN, ['X-Wsbridge-Kind' => 'events'])->status);
        self::assertSame(['/chat'], $made);
        self::assertFalse(Context::has(ServerRequestInterface::class));
    }

    /**
     * @param array<string, string> $query
     */
    private static function swooleRequest(array $query): \Swoole\Http\Request
    {
        $r = new \Swoole\Http\Request();
        $r->get = $query;
        $r->server = ['request_uri' => '/events', 'request_method' => 'POST'];
        $r->header = ['x-wsbridge-kind' => 'events'];
        return $r;
    }
}
