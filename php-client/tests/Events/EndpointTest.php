<?php

declare(strict_types=1);

namespace WsBridge\Tests\Events;

use PHPUnit\Framework\TestCase;
use WsBridge\Events\Endpoint;
use WsBridge\Events\EventHandler;
use WsBridge\Events\Signature;
use WsBridge\Sender;
use WsBridge\Tests\Support\RecordingController;
use WsBridge\Tests\Support\RecordingRPC;

/**
 * Plain PHP: the README's front controller (tests/fixtures/front/index.php)
 * under `php -S`, reached over real HTTP.
 */
final class EndpointTest extends TestCase
{
    private const SECRET = 'front-secret';

    /** @var resource|null */
    private static $server = null;
    private static string $url = '';
    private static string $log = '';
    private static string $serverLog = '';

    public static function setUpBeforeClass(): void
    {
        self::$log = (string) \tempnam(\sys_get_temp_dir(), 'wsbridge-front-');
        self::$serverLog = (string) \tempnam(\sys_get_temp_dir(), 'wsbridge-php-s-');
        $probe = \stream_socket_server('tcp://127.0.0.1:0');
        $addr = \stream_socket_get_name($probe, false);
        \fclose($probe);
        $env = ['WSBRIDGE_TEST_LOG' => self::$log, 'WSBRIDGE_EVENTS_SECRET' => self::SECRET, 'WSBRIDGE_RPC_ADDR' => 'tcp://127.0.0.1:1', 'PATH' => (string) \getenv('PATH')];
        $process = \proc_open(
            [\PHP_BINARY, '-S', $addr, \dirname(__DIR__) . '/fixtures/front/index.php'],
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', self::$serverLog, 'w'], 2 => ['file', self::$serverLog, 'a']],
            $pipes,
            null,
            $env,
        );
        if ($process === false) {
            self::fail('cannot start php -S');
        }
        self::$server = $process;
        self::$url = "http://{$addr}/wsbridge/events";
        $deadline = \microtime(true) + 10;
        while (@\stream_socket_client("tcp://{$addr}", $errno, $errstr, 0.2) === false) {
            if (\microtime(true) > $deadline) {
                self::fail('php -S did not start: ' . \file_get_contents(self::$serverLog));
            }
            \usleep(20000);
        }
    }

    public static function tearDownAfterClass(): void
    {
        if (self::$server !== null) {
            \proc_terminate(self::$server);
            \proc_close(self::$server);
            self::$server = null;
        }
        @\unlink(self::$log);
        @\unlink(self::$serverLog);
    }

    /**
     * @param array<string, string> $headers
     * @return array{int, string, array<string, string>}
     */
    private static function request(string $method, string $body, array $headers = []): array
    {
        $lines = [];
        foreach ($headers as $name => $value) {
            $lines[] = "{$name}: {$value}";
        }
        $context = \stream_context_create(['http' => [
            'method' => $method,
            'header' => \implode("\r\n", $lines),
            'content' => $body,
            'ignore_errors' => true,
            'timeout' => 10,
        ]]);
        $answer = \file_get_contents(self::$url, false, $context);
        /** @var list<string> $http_response_header */
        $status = (int) \explode(' ', $http_response_header[0])[1];
        $got = [];
        foreach (\array_slice($http_response_header, 1) as $h) {
            [$n, $v] = \explode(':', $h, 2);
            $got[\strtolower($n)] = \trim($v);
        }
        return [$status, (string) $answer, $got];
    }

    /**
     * @return array{int, string, array<string, string>}
     */
    private static function signed(string $kind, string $body, ?int $ts = null): array
    {
        $ts ??= \time();
        return self::request('POST', $body, [
            'Content-Type' => 'application/json',
            'X-Wsbridge-Kind' => $kind,
            'X-Wsbridge-Node' => '0',
            'X-Wsbridge-Timestamp' => (string) $ts,
            'X-Wsbridge-Signature' => Signature::sign(self::SECRET, $ts, $body),
            'X-Wsbridge-Attempt' => '1',
        ]);
    }

    /**
     * @return list<mixed>
     */
    private static function logged(): array
    {
        $lines = \array_filter(\explode("\n", (string) \file_get_contents(self::$log)));
        \file_put_contents(self::$log, '');
        return \array_map(static fn (string $l): mixed => \json_decode($l, true), \array_values($lines));
    }

    public function testASignedBatchIsDispatchedInOrder(): void
    {
        $body = \json_encode(['node' => 0, 'events' => [
            ['type' => 'open', 'fd' => 11, 'seq' => 1, 'time' => 1, 'path' => '/', 'query' => 'room=9', 'headers' => ['User-Agent' => ['test/1']], 'remote_addr' => '127.0.0.1:5000'],
            ['type' => 'message', 'fd' => 11, 'seq' => 2, 'time' => 2, 'opcode' => 1, 'data' => 'hello'],
            ['type' => 'message', 'fd' => 11, 'seq' => 3, 'time' => 3, 'opcode' => 1, 'data' => 'boom'],
            ['type' => 'message', 'fd' => 11, 'seq' => 4, 'time' => 4, 'opcode' => 2, 'data' => \base64_encode("\x00\xff"), 'encoding' => 'base64'],
            ['type' => 'close', 'fd' => 11, 'seq' => 5, 'time' => 5, 'code' => 1000, 'reason' => '', 'by' => 'server'],
        ]]);
        [$status, $answer] = self::signed('events', $body);
        self::assertSame(204, $status, $answer);
        self::assertSame([
            ['open', 11, ['room' => '9'], 'test/1'],
            ['message', 11, 1, \base64_encode('hello')],
            ['message', 11, 1, \base64_encode('boom')],
            ['message', 11, 2, \base64_encode("\x00\xff")],
            ['close', 11, -1],
        ], self::logged());
        self::assertStringContainsString('the message event of fd 11 (seq 3) failed: RuntimeException: boom', (string) \file_get_contents(self::$serverLog));
    }

    public function testRefusals(): void
    {
        $body = '{"node":0,"events":[{"type":"message","fd":1,"seq":2,"time":1,"opcode":1,"data":"x"}]}';
        [$status, $answer] = self::request('POST', $body, ['Content-Type' => 'application/json', 'X-Wsbridge-Kind' => 'events']);
        self::assertSame(401, $status);
        self::assertStringContainsString('not signed', $answer);
        [$status] = self::signed('events', $body, \time() - 400);
        self::assertSame(401, $status);
        [$status, $answer, $headers] = self::request('GET', '');
        self::assertSame(405, $status);
        self::assertSame('POST', $headers['allow']);
        [$status, $answer] = self::signed('events', '{"node":0,"events":[{"type":"message","fd":1,"seq":2,"time":1,"opcode":1,"data":"' . \str_repeat('x', 70000) . '"}]}');
        self::assertSame(400, $status);
        self::assertStringContainsString('over the limit of 65536 bytes', $answer);
        [$status] = self::signed('events', '{"node":0,"events":[{"type":"message","fd":-1,"seq":2,"time":1,"opcode":1,"data":"x"}]}');
        self::assertSame(400, $status);
        self::assertSame([], self::logged());
    }

    public function testAuth(): void
    {
        $hs = static fn (string $token): string => \json_encode(['node' => 0, 'path' => '/', 'query' => "token={$token}", 'headers' => ['Host' => ['x']], 'remote_addr' => '127.0.0.1:1']);
        [$status, $answer, $headers] = self::signed('auth', $hs('good'));
        self::assertSame(200, $status);
        self::assertSame('application/json', $headers['content-type']);
        self::assertSame(['allow' => true, 'user' => 'user-1', 'groups' => ['lobby']], \json_decode($answer, true));
        [$status, $answer] = self::signed('auth', $hs('bad'));
        self::assertSame(200, $status);
        self::assertSame(['allow' => false, 'status' => 401, 'message' => 'bad token'], \json_decode($answer, true));
    }

    public function testHeadersFromServerVariables(): void
    {
        self::assertSame([
            'content-type' => 'application/json',
            'content-length' => '12',
            'x-wsbridge-kind' => 'events',
            'x-wsbridge-timestamp' => '1764050000',
        ], Endpoint::headers([
            'REQUEST_METHOD' => 'POST',
            'CONTENT_TYPE' => 'application/json',
            'CONTENT_LENGTH' => '12',
            'HTTP_X_WSBRIDGE_KIND' => 'events',
            'HTTP_X_WSBRIDGE_TIMESTAMP' => '1764050000',
            'argv' => ['x'],
            'REQUEST_TIME' => 1764050000,
        ]));
    }

    public function testHandleReadsAtMostOneByteOverTheLimit(): void
    {
        $file = \tempnam(\sys_get_temp_dir(), 'wsbridge-body-');
        \file_put_contents($file, '{"node":0,"events":[]}' . \str_repeat(' ', 5000));
        $controller = new RecordingController();
        $h = (new EventHandler($controller, new Sender(new RecordingRPC())))->withMaxBodySize(100)->withErrorHandler(static function (): void {
        });
        $res = Endpoint::handle($h, ['REQUEST_METHOD' => 'POST', 'HTTP_X_WSBRIDGE_KIND' => 'events'], $file);
        self::assertSame(400, $res->status);
        self::assertStringContainsString('body of 101 bytes is over the limit of 100', $res->body);
        \file_put_contents($file, '{"node":0,"events":[]}');
        self::assertSame(204, Endpoint::handle($h, ['REQUEST_METHOD' => 'POST', 'HTTP_X_WSBRIDGE_KIND' => 'events'], $file)->status);
        self::assertSame(400, Endpoint::handle($h, ['REQUEST_METHOD' => 'POST'], '/nonexistent/body')->status);
        @\unlink($file);
    }
}
