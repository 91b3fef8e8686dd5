<?php

declare(strict_types=1);

namespace WsBridge\Tests\Hyperf;

use PHPUnit\Framework\TestCase;
use WsBridge\Exception\ConnectionException;
use WsBridge\Goridge\RPCInterface;
use WsBridge\Hyperf\CoroutineRPC;
use WsBridge\Sender;

/**
 * One connection per running coroutine, pooled: driven by a fake
 * coroutine runtime (Swoole is not installed here).
 */
final class CoroutineRPCTest extends TestCase
{
    private int $cid = -1;
    /** @var array<int, list<callable>> */
    private array $deferred = [];
    /** @var list<string> which connection served each call */
    private array $served = [];
    private int $opened = 0;

    private function pool(int $maxIdle = 16, ?\Closure $onCall = null): CoroutineRPC
    {
        return new CoroutineRPC(
            function () use ($onCall): RPCInterface {
                $name = 'conn' . (++$this->opened);
                return new class ($name, $this->served, $onCall) implements RPCInterface {
                    /** @param list<string> $served */
                    public function __construct(private string $name, private array &$served, private ?\Closure $onCall)
                    {
                    }

                    public function call(string $method, mixed $args): mixed
                    {
                        $this->served[] = $this->name;
                        if ($this->onCall !== null) {
                            ($this->onCall)();
                        }
                        return true;
                    }
                };
            },
            fn (): int => $this->cid,
            function (callable $c): void {
                $this->deferred[$this->cid][] = $c;
            },
            $maxIdle,
        );
    }

    private function end(int $cid): void
    {
        foreach (\array_reverse($this->deferred[$cid] ?? []) as $c) {
            $c();
        }
        unset($this->deferred[$cid]);
    }

    public function testOutsideACoroutineOneConnectionIsShared(): void
    {
        $rpc = $this->pool();
        $rpc->call('Sender.Check', ['fd' => 1]);
        $rpc->call('Sender.Check', ['fd' => 1]);
        self::assertSame(['conn1', 'conn1'], $this->served);
        self::assertSame(['opened' => 1, 'idle' => 0, 'borrowed' => 0], $rpc->stats());
    }

    public function testEachCoroutineHasItsOwnAndReturnsItWhenItEnds(): void
    {
        $sender = new Sender($rpc = $this->pool());
        $this->cid = 1;
        $sender->push(1, 'a');
        $this->cid = 2;
        $sender->push(1, 'b');
        $this->cid = 1;
        $sender->push(1, 'c');
        self::assertSame(['conn1', 'conn2', 'conn1'], $this->served);
        self::assertSame(['opened' => 2, 'idle' => 0, 'borrowed' => 2], $rpc->stats());

        $this->end(1);
        self::assertSame(['opened' => 2, 'idle' => 1, 'borrowed' => 1], $rpc->stats());
        $this->cid = 3;
        $sender->push(1, 'd');
        self::assertSame('conn1', $this->served[3], 'an idle connection is reused');
        $this->end(2);
        $this->end(3);
        self::assertSame(['opened' => 2, 'idle' => 2, 'borrowed' => 0], $rpc->stats());
    }

    public function testIdleConnectionsAreBounded(): void
    {
        $rpc = $this->pool(1);
        foreach ([1, 2, 3] as $cid) {
            $this->cid = $cid;
            $rpc->call('Sender.Check', ['fd' => 1]);
        }
        foreach ([1, 2, 3] as $cid) {
            $this->end($cid);
        }
        self::assertSame(['opened' => 3, 'idle' => 1, 'borrowed' => 0], $rpc->stats());
    }

    public function testAConnectionLeftInsideACallIsNotReused(): void
    {
        // The coroutine ends while its call waits for the reply (it is
        // killed): the reply may still come, on that connection.
        $rpc = $this->pool(16, function (): void {
            $this->end($this->cid);
        });
        $this->cid = 7;
        $rpc->call('Sender.Check', ['fd' => 1]);
        self::assertSame(['opened' => 1, 'idle' => 0, 'borrowed' => 0], $rpc->stats());
    }

    public function testCreateWithoutACoroutineRuntime(): void
    {
        $rpc = CoroutineRPC::create('tcp://127.0.0.1:1', ['connect_timeout' => 0.2, 'retries' => 0]);
        try {
            $rpc->call('Sender.Check', ['fd' => 1]);
            self::fail('no exception');
        } catch (ConnectionException $e) {
            self::assertSame('tcp://127.0.0.1:1', $e->getAddress());
        }
        self::assertSame(['opened' => 1, 'idle' => 0, 'borrowed' => 0], $rpc->stats());
    }
}
