<?php

declare(strict_types=1);

namespace WsBridge\Tests;

use PHPUnit\Framework\TestCase;
use WsBridge\Exception\ConnectionException;
use WsBridge\Exception\ProtocolException;
use WsBridge\Exception\ServiceException;
use WsBridge\Goridge\RPC;
use WsBridge\Sender;
use WsBridge\Tests\Support\Bridge;
use WsBridge\Tests\Support\WsClient;

/**
 * Connection handling: unix sockets, reconnects, bounded failures, and
 * replies that must be refused.
 */
final class RPCTest extends TestCase
{
    public function testUnixSocketAndReconnectAfterABridgeRestart(): void
    {
        $dir = \sys_get_temp_dir() . '/wsbridge-php-' . \getmypid();
        @\mkdir($dir);
        $addr = "unix://{$dir}/rpc.sock";
        $bridge = new Bridge([], $addr);
        self::assertSame($addr, $bridge->rpcAddr);
        $sender = Sender::create($addr);
        $client = new WsClient($bridge->wsUrl . '/');
        $fd = $bridge->waitForFd();
        self::assertTrue($sender->push($fd, 'over a unix socket'));
        $ev = $client->next();
        self::assertSame('over a unix socket', $ev['data']);
        self::assertSame(0, $bridge->stop());
        $client->close();
        unset($client, $bridge);

        // A new bridge on the same socket: the idle connection is stale and
        // the next call reconnects without an error.
        $bridge = new Bridge([], $addr);
        self::assertFalse($sender->check($fd));
        $client = new WsClient($bridge->wsUrl . '/');
        $again = $bridge->waitForFd();
        self::assertGreaterThan($fd, $again, 'fds are never reused, not even across restarts');
        self::assertTrue($sender->push($again, 'after the restart'));
        self::assertSame('after the restart', $client->next()['data']);
        self::assertSame(0, $bridge->stop());
        @\rmdir($dir);
    }

    public function testUnreachableAddress(): void
    {
        $rpc = RPC::create('tcp://127.0.0.1:1', ['connect_timeout' => 0.2, 'retries' => 1, 'retry_delay' => 0.01]);
        try {
            $rpc->call('Sender.Check', ['fd' => 1]);
            self::fail('no exception');
        } catch (ConnectionException $e) {
            self::assertSame('tcp://127.0.0.1:1', $e->getAddress());
            self::assertStringContainsString('unreachable after 2 attempts', $e->getMessage());
        }
    }

    /**
     * @return array<string, array{string, class-string<\Throwable>, string}>
     */
    public static function misbehavingPeers(): array
    {
        return [
            'reply with the wrong sequence' => ['wrong-seq', ProtocolException::class, 'does not match'],
            'reply with a bad CRC' => ['bad-crc', ProtocolException::class, 'CRC'],
            'hang up without a reply' => ['hang-up', ConnectionException::class, 'closed the connection'],
            'never answer' => ['silent', ConnectionException::class, 'no reply'],
        ];
    }

    /**
     * @dataProvider misbehavingPeers
     * @param class-string<\Throwable> $exception
     */
    public function testRefusesWhatABridgeWouldNeverSend(string $mode, string $exception, string $message): void
    {
        $peer = \proc_open([\PHP_BINARY, __DIR__ . '/Support/scripted_peer.php', $mode], [1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        self::assertIsResource($peer);
        $addr = \trim((string) \fgets($pipes[1]));
        try {
            $rpc = RPC::create($addr, ['read_timeout' => 0.5]);
            $this->expectException($exception);
            $this->expectExceptionMessageMatches('/' . \preg_quote($message, '/') . '/');
            $rpc->call('Sender.Check', ['fd' => 1]);
        } finally {
            \proc_terminate($peer, 9);
            \fclose($pipes[1]);
            \proc_close($peer);
        }
    }

    public function testConnectionLevelRefusal(): void
    {
        $bridge = new Bridge(['-rpc-max-connections', '1']);
        $first = RPC::create($bridge->rpcAddr);
        self::assertFalse($first->call('Sender.Check', ['fd' => 1]));
        $second = RPC::create($bridge->rpcAddr, ['retries' => 0]);
        try {
            $second->call('Sender.Check', ['fd' => 1]);
            self::fail('no exception');
        } catch (ServiceException $e) {
            self::assertSame('bad_request', $e->getErrorCode());
            self::assertStringContainsString('too many RPC connections', $e->getMessage());
        }
        $first->close();
        self::assertSame(0, $bridge->stop());
    }

    public function testArgumentsThatAreNotJson(): void
    {
        $this->expectException(\WsBridge\Exception\InvalidArgumentException::class);
        RPC::create('tcp://127.0.0.1:1')->call('Sender.Check', ['fd' => \NAN]);
    }
}
