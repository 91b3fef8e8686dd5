<?php

declare(strict_types=1);

namespace WsBridge\Tests\Hyperf;

use App\Controller\SlowController;
use PHPUnit\Framework\TestCase;
use WsBridge\Tests\Support\Bridge;
use WsBridge\Tests\Support\RedisServer;
use WsBridge\Tests\Support\TextClient;
use WsBridge\Tests\Support\Worker;

/**
 * A batch slower than the bridge's events timeout is sent again while the
 * first delivery is still inside the controller, and reaches another
 * worker process. With the shared RedisSeqStore (a real redis-server), each
 * event is dispatched exactly once and the fd's events stay in order.
 */
final class RedeliveryTest extends TestCase
{
    public function testASlowBatchRetriedWhileRunningIsDispatchedOnceAndInOrder(): void
    {
        $redis = new RedisServer();
        $log = (string) \tempnam(\sys_get_temp_dir(), 'wsbridge-slow-');
        $addr = Worker::freeAddr();
        $bridge = new Bridge(['-events-url', "http://{$addr}/", '-events-timeout', '500ms', '-events-retries', '60',
            '-events-retry-max', '200ms']);
        try {
            $worker = new Worker($addr, [$bridge->rpcAddr, SlowController::class, $redis->url], [
                'WSBRIDGE_TEST_WORKERS' => '2',
                'WSBRIDGE_TEST_LOG' => $log,
            ]);
            $c = new TextClient($bridge->wsUrl . '/');
            $c->send('slow');
            \usleep(100_000);
            $c->send('after1');
            $c->send('after2');
            self::assertSame('done slow', $c->receiveText());
            self::assertSame('done after1', $c->receiveText());
            self::assertSame('done after2', $c->receiveText());
            \usleep(700_000); // any late duplicate would show by now

            $calls = \array_map(static fn (string $l): array => \json_decode($l, true), \array_filter(\explode("\n", (string) \file_get_contents($log))));
            $starts = \array_values(\array_filter($calls, static fn (array $c): bool => $c['what'] === 'start'));
            self::assertSame(['slow', 'after1', 'after2'], \array_column($starts, 'data'), 'each message once: ' . \json_encode($calls));
            $ends = \array_column(\array_filter($calls, static fn (array $c): bool => $c['what'] === 'end'), 't', 'data');
            self::assertLessThan($starts[1]['t'], $ends['slow'], 'after1 started only once slow had ended');
            // The redelivery did happen, and was held back while slow ran.
            self::assertStringContainsString('answered 503', $worker->log());
        } finally {
            self::assertSame(0, $bridge->stop());
            @\unlink($log);
        }
    }
}
