<?php

declare(strict_types=1);

namespace WsBridge\Tests;

use PHPUnit\Framework\TestCase;
use WsBridge\Exception\ConnectionException;
use WsBridge\Exception\NotDeliveredException;
use WsBridge\Exception\ServiceException;
use WsBridge\Sender;
use WsBridge\Tests\Support\Bridge;
use WsBridge\Tests\Support\WsClient;

/**
 * End to end: PHP pushes through the real wsbridge binary to real gorilla
 * WebSocket clients.
 */
final class SenderTest extends TestCase
{
    private static ?Bridge $bridge = null;
    private static ?Sender $sender = null;
    private static int $clients = 0;

    public static function setUpBeforeClass(): void
    {
        self::$bridge = new Bridge();
        self::$sender = Sender::create(self::$bridge->rpcAddr, ['read_timeout' => 10.0]);
    }

    public static function tearDownAfterClass(): void
    {
        self::$sender = null;
        if (self::$bridge !== null) {
            self::assertSame(0, self::$bridge->stop());
            self::$bridge = null;
        }
    }

    /**
     * Connects a client and finds its fd through Sender::info (by the id in
     * its query string).
     *
     * @return array{WsClient, int}
     */
    private static function connect(): array
    {
        $id = 'c' . (++self::$clients);
        $client = new WsClient(self::$bridge->wsUrl . '/?id=' . $id);
        // The client sees its handshake complete a moment before the
        // bridge files the connection under its fd: look until it is there.
        $deadline = \microtime(true) + 10;
        do {
            foreach (\array_reverse(self::$bridge->fds()) as $fd) {
                $info = self::$sender->info($fd);
                if ($info !== null && ($info['query']['id'][0] ?? '') === $id) {
                    return [$client, $fd];
                }
            }
            \usleep(2000);
        } while (\microtime(true) < $deadline);
        self::fail("no fd found for client {$id}");
    }

    private static function expectMessage(WsClient $c, string $data, int $opcode = Sender::OPCODE_TEXT): void
    {
        $ev = $c->next();
        self::assertSame('message', $ev['event'], $ev['event'] . ': ' . ($ev['error'] ?? $ev['code'] ?? ''));
        self::assertSame($opcode, $ev['opcode']);
        self::assertSame(\bin2hex($data), \bin2hex($ev['data']));
    }

    public function testNodeOfAndPushWithoutAck(): void
    {
        self::assertSame(0, Sender::nodeOf(1));
        self::assertSame(5, Sender::nodeOf((5 << 43) | 77));
        self::assertSame(1023, Sender::nodeOf((1 << 53) - 1));
        [$c, $fd] = self::connect();
        self::assertSame(0, Sender::nodeOf($fd), 'a standalone bridge is node 0');
        // A local fd is answered for real, ack or not.
        self::assertTrue(self::$sender->pushWithoutAck($fd, 'no ack'));
        self::expectMessage($c, 'no ack');
        self::assertFalse(self::$sender->pushWithoutAck($fd + 1000, 'nobody'));
    }

    public function testConnectionsPageByPage(): void
    {
        [$ca, $a] = self::connect(); // the clients stay open while held
        [$cb, $b] = self::connect();
        self::assertTrue(self::$sender->join($b, 'paged'));
        $fds = [];
        $after = 0;
        do {
            $page = self::$sender->connections($after, 1);
            self::assertLessThanOrEqual(1, \count($page['connections']));
            foreach ($page['connections'] as $c) {
                $fds[] = $c['fd'];
            }
            $after = $page['next_after'];
        } while ($after !== null);
        self::assertContains($a, $fds);
        self::assertContains($b, $fds);
        self::assertSame($fds, \array_values(\array_unique($fds)), 'each fd once, in order');
        $group = self::$sender->connections(0, 100, 'paged');
        self::assertSame([$b], \array_column($group['connections'], 'fd'));
        self::assertNull($group['next_after']);
        try {
            self::$sender->connections(0, 5000);
            self::fail('a limit over 1000 was accepted');
        } catch (ServiceException $e) {
            self::assertSame('bad_request', $e->getErrorCode());
        }
    }

    public function testPushReachesTheClient(): void
    {
        [$c, $fd] = self::connect();
        self::assertTrue(self::$sender->push($fd, 'hello from PHP'));
        self::expectMessage($c, 'hello from PHP');
        self::assertTrue(self::$sender->push($fd, "caf\u{e9} \u{4f60}\u{597d}", Sender::OPCODE_TEXT, true));
        self::expectMessage($c, "caf\u{e9} \u{4f60}\u{597d}");
        self::assertTrue(self::$sender->check($fd));
        self::assertTrue(self::$sender->check((string) $fd));
    }

    public function testBinaryEveryByteValue(): void
    {
        [$c, $fd] = self::connect();
        $all = '';
        for ($i = 0; $i < 256; $i++) {
            $all .= \chr($i);
        }
        self::assertTrue(self::$sender->push($fd, $all, Sender::OPCODE_BINARY));
        self::expectMessage($c, $all, Sender::OPCODE_BINARY);
        $big = \str_repeat($all, 4096); // 1 MiB
        self::assertTrue(self::$sender->push($fd, $big, Sender::OPCODE_BINARY));
        self::expectMessage($c, $big, Sender::OPCODE_BINARY);
    }

    public function testFragmentedPushArrivesWhole(): void
    {
        [$c, $fd] = self::connect();
        self::assertTrue(self::$sender->push($fd, 'one ', Sender::OPCODE_TEXT, false));
        self::assertTrue(self::$sender->push($fd, 'two ', Sender::OPCODE_CONTINUATION, false));
        self::assertTrue(self::$sender->push($fd, 'three', null, true));
        self::expectMessage($c, 'one two three');
    }

    public function testClosedAndUnknownFdsAreFalse(): void
    {
        [$c, $fd] = self::connect();
        self::assertTrue(self::$sender->disconnect($fd, 4001, 'bye'));
        $ev = $c->next();
        self::assertSame(['close', 4001, 'bye'], [$ev['event'], $ev['code'], $ev['text']]);
        self::assertFalse(self::$sender->push($fd, 'too late'));
        self::assertFalse(self::$sender->check($fd));
        self::assertFalse(self::$sender->disconnect($fd));
        self::assertFalse(self::$sender->push(987654321, 'nobody'));
        self::assertFalse(self::$sender->check('not an fd'));
        self::assertNull(self::$sender->info(987654321));
    }

    public function testStrictThrowsInsteadOfFalse(): void
    {
        $strict = self::$sender->withStrict();
        self::assertFalse(self::$sender->isStrict(), 'withStrict must not change the original');
        try {
            $strict->push(987654321, 'nobody');
            self::fail('no exception');
        } catch (NotDeliveredException $e) {
            self::assertSame(987654321, $e->getFd());
        }
        $this->expectException(NotDeliveredException::class);
        $strict->disconnect(987654321);
    }

    /**
     * @return array<string, array{callable(Sender): mixed, string}>
     */
    public static function badCalls(): array
    {
        return [
            'zero fd' => [static fn (Sender $s) => $s->push(0, 'x'), 'invalid_fd'],
            'negative fd' => [static fn (Sender $s) => $s->push(-7, 'x'), 'invalid_fd'],
            'fd past 2^53' => [static fn (Sender $s) => $s->push(1 << 60, 'x'), 'invalid_fd'],
            'close opcode' => [static fn (Sender $s) => $s->push(1, 'x', 8), 'invalid_opcode'],
            'oversized' => [static fn (Sender $s) => $s->push(1, \str_repeat('x', (8 << 20) + 1)), 'too_large'],
            'text that is not UTF-8' => [static fn (Sender $s) => $s->push(1, "\xff\xfe"), 'invalid_utf8'],
            'bad close code' => [static fn (Sender $s) => $s->disconnect(1, 1006), 'invalid_close_code'],
            'empty group' => [static fn (Sender $s) => $s->join(1, ''), 'invalid_name'],
        ];
    }

    /**
     * @dataProvider badCalls
     * @param callable(Sender): mixed $call
     */
    public function testBadInputIsAServiceError(callable $call, string $code): void
    {
        try {
            $call(self::$sender);
            self::fail('no exception');
        } catch (ServiceException $e) {
            self::assertSame($code, $e->getErrorCode(), $e->getMessage());
        }
        // The connection is still good afterwards.
        self::assertFalse(self::$sender->check(987654321));
    }

    public function testBatchManyBroadcastGroupsUsers(): void
    {
        [$a, $fa] = self::connect();
        [$b, $fb] = self::connect();
        self::assertSame([true, false, true], self::$sender->pushBatch([
            ['fd' => $fa, 'data' => 'batch a'],
            ['fd' => 987654321, 'data' => 'nobody'],
            ['fd' => $fb, 'data' => "\x00\x01", 'opcode' => Sender::OPCODE_BINARY],
        ]));
        self::expectMessage($a, 'batch a');
        self::expectMessage($b, "\x00\x01", Sender::OPCODE_BINARY);

        self::assertSame(2, self::$sender->pushMany([$fa, $fb, 987654321], 'many'));
        self::expectMessage($a, 'many');
        self::expectMessage($b, 'many');

        self::assertTrue(self::$sender->join($fa, 'room'));
        self::assertTrue(self::$sender->join($fb, 'room'));
        self::assertSame([$fa, $fb], self::$sender->groupMembers('room'));
        self::assertSame(['room'], self::$sender->groupsOf($fa));
        self::assertSame(2, self::$sender->groups()['room']);
        self::assertSame(1, self::$sender->pushGroup('room', 'to room', null, [$fa]));
        self::expectMessage($b, 'to room');
        self::assertTrue(self::$sender->leave($fb, 'room'));
        self::assertFalse(self::$sender->leave($fb, 'room'));

        self::assertTrue(self::$sender->bind($fa, 42));
        self::assertSame([$fa], self::$sender->userFds(42));
        self::assertSame(1, self::$sender->pushUser(42, 'to user 42'));
        self::expectMessage($a, 'to user 42');
        $info = self::$sender->info($fa);
        self::assertSame('42', $info['user']);
        self::assertSame(['room'], $info['groups']);
        self::assertTrue(self::$sender->unbind($fa));

        $n = self::$sender->broadcast('everyone', null, [$fb]);
        self::assertGreaterThanOrEqual(1, $n);
        self::expectMessage($a, 'everyone');
        self::assertGreaterThanOrEqual(2, self::$sender->stats()['connections']);
    }

    public function testBridgeStoppedRaisesConnectionExceptionWithinTheBound(): void
    {
        $bridge = new Bridge();
        $sender = Sender::create($bridge->rpcAddr, ['connect_timeout' => 0.5, 'read_timeout' => 2.0, 'retries' => 2, 'retry_delay' => 0.05]);
        self::assertFalse($sender->check(1));
        self::assertSame(0, $bridge->stop());
        $start = \microtime(true);
        try {
            $sender->push(1, 'into the void');
            self::fail('no exception');
        } catch (ConnectionException $e) {
            self::assertSame($bridge->rpcAddr, $e->getAddress());
            self::assertStringContainsString($bridge->rpcAddr, $e->getMessage());
        }
        // 3 attempts of at most 0.5 s plus 0.15 s of pauses: never a hang.
        self::assertLessThan(10.0, \microtime(true) - $start);
    }
}
