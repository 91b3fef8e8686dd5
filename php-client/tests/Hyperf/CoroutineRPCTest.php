<?php

declare(strict_types=1);

namespace WsBridge\Tests\Hyperf;

use PHPUnit\Framework\TestCase;
use WsBridge\Coroutine\NoRuntime;
use WsBridge\Exception\ConnectionException;
use WsBridge\Exception\PoolExhaustedException;
use WsBridge\Goridge\RPC;
use WsBridge\Goridge\RPCInterface;
use WsBridge\Hyperf\CoroutineRPC;
use WsBridge\Sender;
use WsBridge\Tests\Support\Bridge;
use WsBridge\Tests\Support\FiberRuntime;
use WsBridge\Tests\Support\WsClient;

/**
 * The bounded pool of RPC connections, against the real bridge, with many
 * coroutines at once: a Fiber runtime stands in for Swoole's, and each call
 * yields while it holds its connection, where a Swoole coroutine would wait
 * for the reply.
 */
final class CoroutineRPCTest extends TestCase
{
    private static ?Bridge $bridge = null;

    public static function setUpBeforeClass(): void
    {
        // The bridge refuses RPC connections past 10, as a busy one would.
        self::$bridge = new Bridge(['-rpc-max-connections', '10']);
    }

    public static function tearDownAfterClass(): void
    {
        if (self::$bridge !== null) {
            self::assertSame(0, self::$bridge->stop());
            self::$bridge = null;
        }
    }

    /**
     * Real RPC connections to the bridge; each call yields first and after,
     * holding its connection meanwhile.
     */
    private static function yielding(FiberRuntime $runtime, ?int &$open = null, float $hold = 0.0): \Closure
    {
        $open = 0;
        return static function () use ($runtime, &$open, $hold): RPCInterface {
            $open++;
            return new class (RPC::create(self::$bridge->rpcAddr), $runtime, $hold) implements RPCInterface {
                public function __construct(private readonly RPC $rpc, private readonly FiberRuntime $runtime, private readonly float $hold)
                {
                }

                public function call(string $method, mixed $args): mixed
                {
                    $this->runtime->yield();
                    $reply = $this->rpc->call($method, $args);
                    $until = \microtime(true) + $this->hold; // a slow reply
                    do {
                        $this->runtime->yield();
                        \usleep(1000);
                    } while (\microtime(true) < $until);
                    return $reply;
                }
            };
        };
    }

    public function testTheBoundHoldsUnder200ConcurrentCallers(): void
    {
        $client = new WsClient(self::$bridge->wsUrl . '/');
        $fd = self::$bridge->waitForFd();
        self::assertGreaterThan(0, $fd);

        $runtime = new FiberRuntime();
        $pool = new CoroutineRPC(self::yielding($runtime), $runtime, 8, 4, 5.0);
        $sender = new Sender($pool);
        $results = [];
        for ($i = 0; $i < 200; $i++) {
            $runtime->go(static function () use ($sender, $fd, $i, &$results): void {
                try {
                    $results[$i] = $sender->push($fd, "m{$i}");
                } catch (\Throwable $e) {
                    $results[$i] = \get_class($e) . ': ' . $e->getMessage();
                }
            });
        }
        $runtime->run();

        \ksort($results);
        self::assertSame(\array_fill(0, 200, true), $results);
        $stats = $pool->stats();
        self::assertSame(8, $stats['max_borrowed'], 'the callers did run at once, up to the bound');
        self::assertLessThanOrEqual(8, $stats['opened']);
        self::assertSame(0, $stats['borrowed']);
        self::assertSame(4, $stats['idle'], 'max_idle connections stay open');
        self::assertSame(4, $stats['active']);
        $got = [];
        for ($i = 0; $i < 200; $i++) {
            $got[] = $client->next()['data'];
        }
        \sort($got);
        $want = \array_map(static fn (int $i): string => "m{$i}", \range(0, 199));
        \sort($want);
        self::assertSame($want, $got);
        self::assertStringNotContainsString('rpc: connection refused, limit reached', self::$bridge->log());
    }

    public function testAWaitPastTheTimeoutThrows(): void
    {
        $runtime = new FiberRuntime();
        // Each call holds its connection for 0.3 s: a slow reply.
        $pool = new CoroutineRPC(self::yielding($runtime, $opened, 0.3), $runtime, 1, 1, 0.05);
        $outcomes = [];
        $runtime->go(static function () use ($pool, &$outcomes): void {
            $outcomes['slow'] = $pool->call('Sender.Check', ['fd' => 1]);
        });
        $runtime->go(static function () use ($pool, &$outcomes): void {
            try {
                $outcomes['waiting'] = $pool->call('Sender.Check', ['fd' => 1]);
            } catch (PoolExhaustedException $e) {
                $outcomes['waiting'] = $e->getMessage();
            }
        });
        $runtime->run();
        self::assertFalse($outcomes['slow']);
        self::assertStringContainsString('stayed busy for 0.05s', (string) $outcomes['waiting']);
        self::assertSame(1, $pool->stats()['opened']);
    }

    public function testAWaiterGetsTheNextFreeConnection(): void
    {
        $runtime = new FiberRuntime();
        $pool = new CoroutineRPC(self::yielding($runtime, $opened), $runtime, 2, 0, 5.0);
        $done = 0;
        for ($i = 0; $i < 6; $i++) {
            $runtime->go(static function () use ($pool, &$done): void {
                $pool->call('Sender.Check', ['fd' => 1]);
                $done++;
            });
        }
        $runtime->run();
        self::assertSame(6, $done);
        self::assertSame(2, $opened, 'the waiters took the connections the first two gave back');
        self::assertSame(['opened' => 2, 'active' => 0, 'idle' => 0, 'borrowed' => 0, 'max_borrowed' => 2], $pool->stats());
    }

    public function testWithoutACoroutineRuntimeOneConnectionServesEveryCall(): void
    {
        $pool = CoroutineRPC::create(self::$bridge->rpcAddr, [], [], new NoRuntime());
        $sender = new Sender($pool);
        for ($i = 0; $i < 5; $i++) {
            self::assertFalse($sender->check(1_000_000 + $i));
        }
        self::assertSame(['opened' => 1, 'active' => 1, 'idle' => 1, 'borrowed' => 0, 'max_borrowed' => 1], $pool->stats());
    }

    public function testAnUnreachableBridgeFreesItsPlace(): void
    {
        $pool = CoroutineRPC::create('unix:///nonexistent/wsbridge.sock', ['connect_timeout' => 0.2, 'retries' => 0], ['max_active' => 1]);
        for ($i = 0; $i < 2; $i++) {
            try {
                $pool->call('Sender.Check', ['fd' => 1]);
                self::fail('no exception');
            } catch (ConnectionException $e) {
                self::assertSame('unix:///nonexistent/wsbridge.sock', $e->getAddress());
            }
        }
        self::assertSame(0, $pool->stats()['borrowed']);
    }
}
