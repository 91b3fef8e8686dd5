<?php

declare(strict_types=1);

namespace WsBridge\Tests\Events;

use PHPUnit\Framework\TestCase;
use WsBridge\Context\ConnectionContext;
use WsBridge\Context\MemoryContextStore;
use WsBridge\Context\RedisContextStore;
use WsBridge\Events\AdminConnections;
use WsBridge\Events\EventHandler;
use WsBridge\Events\MemorySeqStore;
use WsBridge\Events\RedisSeqStore;
use WsBridge\Events\SeqStore;
use WsBridge\Events\Event;
use WsBridge\Events\Server;
use WsBridge\Redis\RedisException;
use WsBridge\Redis\RespClient;
use WsBridge\Sender;
use WsBridge\Tests\Support\Bridge;
use WsBridge\Tests\Support\FiberRuntime;
use WsBridge\Tests\Support\RecordingController;
use WsBridge\Tests\Support\RecordingRPC;
use WsBridge\Tests\Support\RedisServer;
use WsBridge\Tests\Support\WsClient;

/**
 * Connection context (per worker and in Redis), the Hyperf context values
 * set around each event, routes per path, the fds of different connections
 * running at once, and $server->connections over the admin API.
 */
final class ContextRoutingTest extends TestCase
{
    private static function batch(array $events, int $node = 0): string
    {
        return \json_encode(['node' => $node, 'events' => $events], \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_SLASHES);
    }

    private static function open(int $fd, string $path = '/', int $seq = 1): array
    {
        return ['type' => 'open', 'fd' => $fd, 'seq' => $seq, 'time' => 1764050000123, 'path' => $path, 'query' => '',
            'headers' => ['Cookie' => ["user=u{$fd}"]], 'remote_addr' => '203.0.113.9:51234'];
    }

    private static function message(int $fd, int $seq, string $data): array
    {
        return ['type' => 'message', 'fd' => $fd, 'seq' => $seq, 'time' => 1764050000200, 'opcode' => 1, 'data' => $data];
    }

    private static function close(int $fd, int $seq): array
    {
        return ['type' => 'close', 'fd' => $fd, 'seq' => $seq, 'time' => 1764050000300, 'code' => 1000, 'reason' => '', 'by' => 'client'];
    }

    /**
     * A controller that keeps the cookie's user in the connection context
     * and answers with it, and records what Hyperf's own context held.
     */
    private static function contextController(ConnectionContext $context): object
    {
        return new class ($context) {
            /** @var list<string> */
            public array $seen = [];

            public function __construct(private readonly ConnectionContext $context)
            {
            }

            public function onOpen($server, $request): void
            {
                $this->context->set('user', $request->cookie['user']);
            }

            public function onMessage($server, $frame): void
            {
                $this->seen[] = "{$frame->fd}:" . $this->context->get('user') . ':ws.fd=' . \Hyperf\Context\Context::get('ws.fd')
                    . ':hyperf=' . \Hyperf\WebSocketServer\Context::get('k', 'none');
                \Hyperf\WebSocketServer\Context::set('k', "v{$frame->fd}");
            }

            public function onClose($server, int $fd, int $reactorId): void
            {
                $this->seen[] = "close {$fd}:" . $this->context->get('user');
            }
        };
    }

    public static function setUpBeforeClass(): void
    {
        require_once \dirname(__DIR__) . '/fixtures/hyperf/load.php';
    }

    public function testThePerWorkerContextIsSetAroundEachEventAndReleasedAfterClose(): void
    {
        $store = new MemoryContextStore();
        $context = new ConnectionContext($store);
        $controller = self::contextController($context);
        $h = (new EventHandler($controller, new Sender(new RecordingRPC())))->withContext($context);
        $res = $h->handle(self::batch([self::open(1), self::open(2), self::message(1, 2, 'a'), self::message(2, 2, 'b'),
            self::message(1, 3, 'c'), self::close(2, 3)]), ['x-wsbridge-kind' => 'events']);
        self::assertSame(204, $res->status);
        self::assertSame([
            '1:u1:ws.fd=1:hyperf=none',
            '2:u2:ws.fd=2:hyperf=none',
            '1:u1:ws.fd=1:hyperf=v1',
            'close 2:u2',
        ], $controller->seen);
        self::assertSame(1, $store->count(), 'fd 2 was released after its close');
        self::assertSame(['1'], \array_map('strval', \array_keys(\Hyperf\WebSocketServer\Context::getContainer())), "Hyperf's connection context of fd 2 is released too");
        \Hyperf\WebSocketServer\Context::release(1);
    }

    public function testTheRedisContextIsSharedBetweenWorkers(): void
    {
        $redis = new RedisServer();
        $prefix = 'ctx-test-' . \getmypid();
        // Two "workers": two handlers, two controllers, one Redis.
        $contexts = [new ConnectionContext(new RedisContextStore($redis->url, $prefix)), new ConnectionContext(new RedisContextStore(RespClient::fromUrl($redis->url), $prefix))];
        $controllers = [self::contextController($contexts[0]), self::contextController($contexts[1])];
        $handlers = [];
        foreach ([0, 1] as $i) {
            $handlers[$i] = (new EventHandler($controllers[$i], new Sender(new RecordingRPC())))->withContext($contexts[$i]);
        }
        $kind = ['x-wsbridge-kind' => 'events'];
        self::assertSame(204, $handlers[0]->handle(self::batch([self::open(7)]), $kind)->status);
        self::assertSame(204, $handlers[1]->handle(self::batch([self::message(7, 2, 'x')]), $kind)->status);
        self::assertSame(['7:u7:ws.fd=7:hyperf=none'], $controllers[1]->seen, 'the other worker reads what onOpen stored');
        $contexts[1]->set('list', ['a' => 1, 'b' => [true, null, 1.5]]);
        self::assertSame(['user' => 'u7', 'list' => ['a' => 1, 'b' => [true, null, 1.5]]], $contexts[0]->all(7));
        self::assertSame(204, $handlers[0]->handle(self::batch([self::close(7, 3)]), $kind)->status);
        self::assertSame([], $contexts[1]->all(7), 'released for every worker after the close');
        $ttl = (new RespClient('tcp://' . \substr($redis->url, 8)))->command('TTL', "{$prefix}:ctx:8");
        self::assertSame(-2, $ttl);
        $contexts[0]->enter(8);
        $contexts[0]->set('x', 1);
        self::assertGreaterThan(86000, (new RespClient('tcp://' . \substr($redis->url, 8)))->command('TTL', "{$prefix}:ctx:8"));

        try {
            (new RespClient('tcp://' . \substr($redis->url, 8)))->command('NOSUCHCOMMAND');
            self::fail('no exception');
        } catch (RedisException $e) {
            self::assertStringContainsString('unknown command', $e->getMessage());
        }
    }

    public function testTheRedisSeqStoreClaims(): void
    {
        $redis = new RedisServer();
        $a = new RedisSeqStore($redis->url, 'seq-test');
        $b = new RedisSeqStore($redis->url, 'seq-test');
        $open = new Event(Event::OPEN, 0, 5, 1, 1000);
        $msg = new Event(Event::MESSAGE, 0, 5, 2, 1001);
        self::assertSame(SeqStore::DISPATCH, $a->claim($open, 5));
        self::assertSame(SeqStore::BUSY, $b->claim($open, 5), 'another worker runs it now');
        self::assertSame(SeqStore::BUSY, $b->claim($msg, 5), 'and the fd\'s next event waits for it');
        $a->complete($open);
        self::assertSame(SeqStore::SKIP, $b->claim($open, 5));
        self::assertSame(SeqStore::DISPATCH, $b->claim($msg, 0.05));
        \usleep(100_000);
        self::assertSame(SeqStore::DISPATCH, $a->claim($msg, 5), 'a claim whose holder died lapses after its lease');
        $a->complete($msg);
        self::assertSame(SeqStore::SKIP, $b->claim($msg, 5));
        // The bridge restarted: fd 5 again, with another open time, is a new connection.
        self::assertSame(SeqStore::DISPATCH, $b->claim(new Event(Event::OPEN, 0, 5, 1, 2000), 5));
        self::assertSame(SeqStore::DISPATCH, $b->claim(new Event(Event::OPEN, 1, 5, 1, 2000), 5), 'node 1\'s fd 5 is another');
    }

    public function testARedeliveryWhileTheFirstStillRunsIsHeldBack(): void
    {
        $store = new MemorySeqStore();
        $controller = new RecordingController();
        $h = (new EventHandler($controller, new Sender(new RecordingRPC())))->withSeqStore($store, 30);
        // The first delivery's claim of fd 3 (seq 2) is still running.
        self::assertSame(SeqStore::DISPATCH, $store->claim(new Event(Event::MESSAGE, 0, 3, 2, 0), 30));
        $res = $h->handle(self::batch([self::message(4, 1, 'other fd'), self::message(3, 2, 'first'), self::message(3, 3, 'next')]), ['x-wsbridge-kind' => 'events']);
        self::assertSame(503, $res->status);
        self::assertStringContainsString('fd 3', $res->body);
        self::assertSame(['message 4 other fd'], $controller->summary(), 'other fds go on; fd 3 waits, in order');
        $store->complete(new Event(Event::MESSAGE, 0, 3, 2, 0));
        $res = $h->handle(self::batch([self::message(4, 1, 'other fd'), self::message(3, 2, 'first'), self::message(3, 3, 'next')]), ['x-wsbridge-kind' => 'events']);
        self::assertSame(204, $res->status);
        self::assertSame(['message 4 other fd', 'message 3 next'], $controller->summary());
    }

    public function testEachPathItsController(): void
    {
        $chat = new RecordingController();
        $admin = new RecordingController();
        $fallback = new RecordingController();
        $rpc = new RecordingRPC(['Sender.Info' => static fn (array $a): array => ['connected' => true, 'path' => '/admin']]);
        $h = (new EventHandler($fallback, new Sender($rpc)))->withRoute('/chat', $chat)->withRoute('/admin', $admin);
        $kind = ['x-wsbridge-kind' => 'events'];
        self::assertSame(204, $h->handle(self::batch([self::open(1, '/chat'), self::open(2, '/admin'), self::open(3, '/other'),
            self::message(1, 2, 'to chat'), self::message(2, 2, 'to admin'), self::message(3, 2, 'to fallback'), self::close(1, 3)]), $kind)->status);
        self::assertSame(['open 1', 'message 1 to chat', 'close 1 0'], $chat->summary());
        self::assertSame(['open 2', 'message 2 to admin'], $admin->summary());
        self::assertSame(['open 3', 'message 3 to fallback'], $fallback->summary());
        self::assertSame([], $rpc->lines(), 'the paths came from the open events');
        // fd 9 opened on another worker: its path comes from the bridge.
        self::assertSame(204, $h->handle(self::batch([self::message(9, 5, 'where?')]), $kind)->status);
        self::assertSame(['open 2', 'message 2 to admin', 'message 9 where?'], $admin->summary());
        self::assertSame(['Sender.Info {"fd":9}'], $rpc->lines());
        // A bridge that puts the path in every event: no lookup, no state.
        $m = self::message(11, 4, 'routed by its own path') + ['path' => '/chat'];
        self::assertSame(204, $h->handle(self::batch([$m]), $kind)->status);
        self::assertSame(['open 1', 'message 1 to chat', 'close 1 0', 'message 11 routed by its own path'], $chat->summary());
        self::assertSame(['Sender.Info {"fd":9}'], $rpc->lines(), 'no lookup for an event that carries its path');
        self::assertSame(400, $h->handle(self::batch([self::message(12, 2, 'x') + ['path' => 'nope']]), $kind)->status);
    }

    public function testDifferentFdsRunAtOnceEachInOrder(): void
    {
        $runtime = new FiberRuntime();
        $trace = [];
        $controller = new class ($runtime, $trace) {
            public function __construct(private readonly FiberRuntime $runtime, private array &$trace)
            {
            }

            public function onMessage($server, $frame): void
            {
                $this->trace[] = "start {$frame->fd}:{$frame->data}";
                $this->runtime->yield(); // waits for I/O: others run meanwhile
                $this->trace[] = "end {$frame->fd}:{$frame->data}";
            }
        };
        $h = (new EventHandler($controller, new Sender(new RecordingRPC())))->withRuntime($runtime);
        $res = null;
        $runtime->go(static function () use ($h, &$res): void {
            $res = $h->handle(self::batch([self::message(1, 1, 'a'), self::message(1, 2, 'b'), self::message(2, 1, 'x')]), ['x-wsbridge-kind' => 'events']);
        });
        $runtime->run();
        self::assertSame(204, $res->status);
        self::assertSame(['start 1:a', 'start 2:x', 'end 1:a', 'start 1:b', 'end 2:x', 'end 1:b'], $trace);
    }

    public function testConnectionsThroughTheAdminApi(): void
    {
        $bridge = new Bridge(['-admin-token', 'admin-secret-0123456789']);
        try {
            for ($deadline = \microtime(true) + 10; \preg_match('/"msg":"admin listening","addr":"([^"]+)"/', $bridge->log(), $m) !== 1;) {
                self::assertLessThan($deadline, \microtime(true), $bridge->log());
                \usleep(10000);
            }
            self::assertNotEmpty($m, $bridge->log());
            $clients = [new WsClient($bridge->wsUrl . '/'), new WsClient($bridge->wsUrl . '/'), new WsClient($bridge->wsUrl . '/')];
            $sender = Sender::create($bridge->rpcAddr);
            for ($deadline = \microtime(true) + 10; $sender->stats()['connections'] < 3 && \microtime(true) < $deadline;) {
                \usleep(5000);
            }
            $server = new Server($sender, (new AdminConnections("http://{$m[1]}", 'admin-secret-0123456789'))->lister());
            $fds = [];
            foreach ($server->connections as $fd) {
                $fds[] = $fd;
            }
            self::assertCount(3, $fds);
            self::assertCount(3, $server->connections);
            self::assertTrue(isset($server->connections[$fds[0]]));
            self::assertFalse(isset($server->connections[$fds[2] + 1000]));
            // Pages of one: the same fds.
            $paged = new Server($sender, static fn (int $after, int $limit): array
                => (new AdminConnections("http://{$m[1]}", 'admin-secret-0123456789'))->page($after, 1));
            self::assertSame($fds, \iterator_to_array($paged->connections, false));
            $wrong = new Server($sender, (new AdminConnections("http://{$m[1]}", 'wrong'))->lister());
            try {
                \iterator_to_array($wrong->connections);
                self::fail('no exception');
            } catch (\WsBridge\Exception\ProtocolException $e) {
                self::assertStringContainsString('answered 401', $e->getMessage());
            }
            unset($clients);
        } finally {
            self::assertSame(0, $bridge->stop());
        }
    }
}
