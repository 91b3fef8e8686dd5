<?php

declare(strict_types=1);

namespace WsBridge\Tests\Hyperf;

use App\Controller\TypedWebSocketController;
use App\Controller\WebSocketController;
use PHPUnit\Framework\TestCase;
use Swoole\Http\Request;
use Swoole\WebSocket\Frame;
use WsBridge\Events\EventHandler;
use WsBridge\Events\Server;
use WsBridge\Sender;
use WsBridge\Tests\Support\RecordingRPC;

/**
 * Hyperf WebSocket controllers, unchanged, driven by the events handler:
 * one implementing Hyperf 3.1's contract interfaces (the fixtures), one
 * type-hinting Swoole's classes.
 */
final class ControllerTest extends TestCase
{
    public static function setUpBeforeClass(): void
    {
        require_once \dirname(__DIR__) . '/fixtures/hyperf/load.php';
    }

    private const BATCH = [
        ['type' => 'open', 'fd' => 21, 'seq' => 1, 'time' => 1764050000500, 'path' => '/chat', 'query' => 'token=t0k&room=7',
            'headers' => ['Host' => ['ws.example.com'], 'User-Agent' => ['Mozilla/5.0'], 'Cookie' => ['sid=abc']],
            'remote_addr' => '198.51.100.4:61000', 'subprotocol' => ''],
        ['type' => 'open', 'fd' => 22, 'seq' => 1, 'time' => 1764050000501, 'path' => '/chat', 'query' => '', 'headers' => [],
            'remote_addr' => '198.51.100.5:61001'],
        ['type' => 'message', 'fd' => 21, 'seq' => 2, 'time' => 1764050000600, 'opcode' => 1, 'data' => 'hello'],
        ['type' => 'message', 'fd' => 22, 'seq' => 2, 'time' => 1764050000601, 'opcode' => 2, 'data' => 'AAEC/w==', 'encoding' => 'base64'],
        ['type' => 'message', 'fd' => 21, 'seq' => 3, 'time' => 1764050000602, 'opcode' => 1, 'data' => 'boom'],
        ['type' => 'message', 'fd' => 21, 'seq' => 4, 'time' => 1764050000603, 'opcode' => 1, 'data' => 'still here'],
        ['type' => 'close', 'fd' => 22, 'seq' => 3, 'time' => 1764050000700, 'code' => 1001, 'reason' => '', 'by' => 'server'],
        ['type' => 'close', 'fd' => 21, 'seq' => 5, 'time' => 1764050000701, 'code' => 1000, 'reason' => 'bye', 'by' => 'client'],
    ];

    public function testAHyperf31Controller(): void
    {
        $controller = new WebSocketController();
        self::assertInstanceOf(\Hyperf\Contract\OnOpenInterface::class, $controller);
        $rpc = new RecordingRPC();
        $errors = [];
        $handler = (new EventHandler($controller, new Sender($rpc)))->withErrorHandler(static function (\Throwable $e) use (&$errors): void {
            $errors[] = $e->getMessage();
        });
        $res = $handler->handle(\json_encode(['node' => 0, 'events' => self::BATCH]), ['X-Wsbridge-Kind' => 'events']);
        self::assertSame(204, $res->status);

        $got = $controller->received;
        self::assertSame(['open', 'open', 'message', 'message', 'message', 'message', 'close', 'close'], \array_column($got, 'event'));
        $request = $got[0]['request'];
        self::assertInstanceOf(Request::class, $request);
        self::assertSame(21, $request->fd);
        self::assertSame(['host' => 'ws.example.com', 'user-agent' => 'Mozilla/5.0', 'cookie' => 'sid=abc'], $request->header);
        self::assertSame(['token' => 't0k', 'room' => '7'], $request->get);
        self::assertSame(['sid' => 'abc'], $request->cookie);
        self::assertSame('198.51.100.4', $request->server['remote_addr']);
        self::assertSame(61000, $request->server['remote_port']);
        self::assertSame('/chat', $request->server['request_uri']);
        self::assertSame('token=t0k&room=7', $request->server['query_string']);
        self::assertSame(1764050000, $request->server['request_time']);
        self::assertSame(22, $got[1]['request']->fd);
        self::assertNull($got[1]['request']->get);

        $frames = \array_column(\array_slice($got, 2, 4), 'frame');
        foreach ($frames as $frame) {
            self::assertInstanceOf(Frame::class, $frame);
            self::assertTrue($frame->finish);
        }
        self::assertSame(
            [[21, 'hello', 1], [22, "\x00\x01\x02\xff", 2], [21, 'boom', 1], [21, 'still here', 1]],
            \array_map(static fn (Frame $f): array => [$f->fd, $f->data, $f->opcode], $frames)
        );
        self::assertSame([['event' => 'close', 'fd' => 22, 'reactorId' => -1], ['event' => 'close', 'fd' => 21, 'reactorId' => 0]], \array_slice($got, 6));

        self::assertSame(['the controller failed on purpose'], $errors, 'Hyperf logs a controller exception and keeps going');
        self::assertSame([
            'Sender.Push {"fd":21,"data":"Opened","opcode":1,"finish":true}',
            'Sender.Push {"fd":22,"data":"Opened","opcode":1,"finish":true}',
            'Sender.Push {"fd":21,"data":"Recv: hello","opcode":1,"finish":true}',
            'Sender.Push {"fd":22,"data":"UmVjdjogAAEC/w==","opcode":2,"encoding":"base64","finish":true}',
            'Sender.Push {"fd":21,"data":"Recv: still here","opcode":1,"finish":true}',
        ], $rpc->lines());
    }

    public function testAControllerTypeHintingSwoolesClasses(): void
    {
        $controller = new TypedWebSocketController();
        $handler = new EventHandler($controller, new Server(new Sender(new RecordingRPC())));
        self::assertSame(204, $handler->handle(\json_encode(['node' => 0, 'events' => self::BATCH]), ['X-Wsbridge-Kind' => 'events'])->status);
        self::assertSame([
            'open 21 /chat',
            'open 22 /chat',
            'message 21 1 ' . \bin2hex('hello'),
            'message 22 2 000102ff',
            'message 21 1 ' . \bin2hex('boom'),
            'message 21 1 ' . \bin2hex('still here'),
            'close 22 -1',
            'close 21 0',
        ], $controller->received);
    }
}
