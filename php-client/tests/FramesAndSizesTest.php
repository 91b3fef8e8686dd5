<?php

declare(strict_types=1);

namespace WsBridge\Tests;

use PHPUnit\Framework\TestCase;
use Swoole\WebSocket\Frame;
use WsBridge\Exception\ServiceException;
use WsBridge\Sender;
use WsBridge\Tests\Support\Bridge;
use WsBridge\Tests\Support\WsClient;

/**
 * Frame objects pushed as data arrive as their payload (not their wire
 * form), and pushes over the bridge's RPC frame limit are refused at once,
 * without being written again and again: against the real bridge, whose
 * rpc-max-frame-size is lowered to 64 KiB here.
 */
final class FramesAndSizesTest extends TestCase
{
    private const LIMIT = 65536;
    private static ?Bridge $bridge = null;

    public static function setUpBeforeClass(): void
    {
        self::$bridge = new Bridge(['-rpc-max-frame-size', (string) self::LIMIT]);
    }

    public static function tearDownAfterClass(): void
    {
        if (self::$bridge !== null) {
            self::assertSame(0, self::$bridge->stop());
            self::$bridge = null;
        }
    }

    /**
     * @return array{WsClient, int, Sender}
     */
    private static function connect(array $options = []): array
    {
        $sender = Sender::create(self::$bridge->rpcAddr, $options);
        $before = self::$bridge->fds();
        $client = new WsClient(self::$bridge->wsUrl . '/');
        for ($deadline = \microtime(true) + 10; \microtime(true) < $deadline; \usleep(2000)) {
            $new = \array_values(\array_diff(self::$bridge->fds(), $before));
            if ($new !== []) {
                return [$client, $new[0], $sender];
            }
        }
        self::fail('the client never showed up');
    }

    private static function expect(WsClient $c, string $data, int $opcode): void
    {
        $ev = $c->next();
        self::assertSame('message', $ev['event'], \var_export($ev, true));
        self::assertSame($opcode, $ev['opcode']);
        self::assertSame(\bin2hex($data), \bin2hex($ev['data']));
    }

    public function testASwooleFrameIsSentAsItsData(): void
    {
        [$c, $fd, $sender] = self::connect();
        $frame = new Frame();
        $frame->data = "\x00\x01binary\xff";
        $frame->opcode = 2;
        self::assertTrue($sender->push($fd, $frame));
        self::expect($c, "\x00\x01binary\xff", 2);

        // finish=false (or flags without FIN) continues the message.
        $first = new Frame();
        $first->data = 'one ';
        $first->finish = false;
        $last = new Frame();
        $last->data = 'two';
        $last->opcode = 0;
        $last->flags = 1;
        self::assertTrue($sender->push($fd, $first));
        self::assertTrue($sender->push($fd, $last));
        self::expect($c, 'one two', 1);

        // In a batch too.
        self::assertSame([true], $sender->pushBatch([['fd' => $fd, 'data' => $frame]]));
        self::expect($c, "\x00\x01binary\xff", 2);
    }

    public function testSwoolesFlagsBitmask(): void
    {
        [$c, $fd, $sender] = self::connect();
        // SWOOLE_WEBSOCKET_FLAG_COMPRESS (2) alone: no FIN, the message goes on.
        self::assertTrue($sender->push($fd, 'a', 1, 2));
        self::assertTrue($sender->push($fd, 'b', 0, 0));
        self::assertTrue($sender->push($fd, 'c', 0, 1 | 2));
        self::expect($c, 'abc', 1);
    }

    public function testAnEngineFrameIsSentAsItsPayload(): void
    {
        require_once __DIR__ . '/fixtures/hyperf/load.php';
        [$c, $fd, $sender] = self::connect();
        $frame = new \Hyperf\Engine\WebSocket\Frame(opcode: 2, payloadData: "\x10\x20");
        self::assertTrue($sender->push($fd, $frame));
        self::expect($c, "\x10\x20", 2);
        $part = new \Hyperf\Engine\WebSocket\Frame(fin: false, payloadData: 'hel');
        self::assertTrue($sender->push($fd, $part));
        self::assertTrue($sender->push($fd, new \Hyperf\Engine\WebSocket\Frame(opcode: 0, payloadData: 'lo')));
        self::expect($c, 'hello', 1);
    }

    public function testAnOversizedPushIsRefusedAtOnce(): void
    {
        [$c, $fd, $sender] = self::connect(['max_request_size' => self::LIMIT, 'retries' => 2]);
        $started = \microtime(true);
        try {
            $sender->push($fd, \str_repeat('x', self::LIMIT), Sender::OPCODE_TEXT);
            self::fail('no exception');
        } catch (ServiceException $e) {
            self::assertSame('too_large', $e->getErrorCode());
            self::assertStringContainsString('frame limit of 65536 bytes', $e->getMessage());
        }
        try {
            $sender->pushBatch([['fd' => $fd, 'data' => \str_repeat('y', 40000)], ['fd' => $fd, 'data' => \str_repeat('z', 40000)]]);
            self::fail('no exception');
        } catch (ServiceException $e) {
            self::assertSame('too_large', $e->getErrorCode());
        }
        self::assertLessThan(1.0, \microtime(true) - $started);
        self::assertStringNotContainsString('closing connection after a bad frame', self::$bridge->log(), 'nothing was written');
        // The connection is fine for the next push.
        self::assertTrue($sender->push($fd, 'small'));
        self::expect($c, 'small', 1);
    }

    public function testAFrameTheBridgeRefusesIsNeverWrittenAgain(): void
    {
        // This client believes the limit is 32 MiB; the bridge's is 64 KiB.
        [, $fd, $sender] = self::connect(['retries' => 2, 'retry_delay' => 0.01]);
        $before = \substr_count(self::$bridge->log(), 'closing connection after a bad frame');
        try {
            $sender->push($fd, \str_repeat('x', 24 << 20), Sender::OPCODE_TEXT);
            self::fail('no exception');
        } catch (\WsBridge\Exception\WsBridgeException $e) {
            self::assertStringNotContainsString('unreachable', $e->getMessage(), 'not reported as a bridge that is down');
            self::assertStringContainsString('over the limit of 65536 bytes', $e->getMessage());
        }
        \usleep(100000);
        self::assertSame(1, \substr_count(self::$bridge->log(), 'closing connection after a bad frame') - $before, 'written once');
        self::assertFalse($sender->check($fd + 1_000_000), 'the next call reconnects');
    }
}
