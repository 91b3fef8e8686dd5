<?php

declare(strict_types=1);

namespace WsBridge\Tests\Events;

use PHPUnit\Framework\TestCase;
use WsBridge\Events\ConnectionResponse;
use WsBridge\Events\EventHandler;
use WsBridge\Events\Server;
use WsBridge\Exception\InvalidArgumentException;
use WsBridge\Exception\UnsupportedException;
use WsBridge\Sender;
use WsBridge\Tests\Support\RecordingController;
use WsBridge\Tests\Support\RecordingRPC;

/**
 * The $server of Hyperf's coroutine server style: the connection's
 * Swoole\Http\Response, its calls sent to the bridge for its fd.
 */
final class ConnectionResponseTest extends TestCase
{
    public function testCallsGoToItsFd(): void
    {
        $rpc = new RecordingRPC(['Sender.Check' => static fn (array $a): bool => $a['fd'] === 7]);
        $response = (new Server(new Sender($rpc)))->connection(7);
        self::assertInstanceOf(\Swoole\Http\Response::class, $response);
        self::assertSame(7, $response->fd);
        self::assertSame(7, $response->getFd());
        self::assertTrue($response->push('hi'));
        self::assertTrue($response->push("\x00", 2));
        self::assertTrue($response->push('part', 1, 0)); // no SWOOLE_WEBSOCKET_FLAG_FIN
        $frame = new \Swoole\WebSocket\Frame();
        $frame->data = 'framed';
        self::assertTrue($response->push($frame));
        self::assertTrue($response->ping('p'));
        self::assertTrue($response->disconnect(4000, 'bye'));
        self::assertTrue($response->close());
        self::assertTrue($response->isWritable());
        self::assertTrue($response->upgrade());
        self::assertTrue($response->server()->push(8, 'other'), 'server() reaches any fd');
        self::assertSame([
            'Sender.Push {"fd":7,"data":"hi","opcode":1,"finish":true}',
            'Sender.Push {"fd":7,"data":"AA==","opcode":2,"encoding":"base64","finish":true}',
            'Sender.Push {"fd":7,"data":"part","opcode":1,"finish":false}',
            'Sender.Push {"fd":7,"data":"framed","opcode":1,"finish":true}',
            'Sender.Push {"fd":7,"data":"cA==","opcode":9,"encoding":"base64"}',
            'Sender.Disconnect {"fd":7,"code":4000,"reason":"bye"}',
            'Sender.Disconnect {"fd":7,"code":1000}',
            'Sender.Check {"fd":7}',
            'Sender.Push {"fd":8,"data":"other","opcode":1,"finish":true}',
        ], $rpc->lines());
    }

    public function testTheHttpHalfIsRefused(): void
    {
        $response = (new Server(new Sender(new RecordingRPC())))->connection(7);
        foreach (['recv', 'end', 'write', 'header', 'status', 'detach', 'sendfile', 'somethingElse'] as $method) {
            try {
                $response->{$method}('x');
                self::fail("{$method} did not throw");
            } catch (UnsupportedException $e) {
                self::assertStringContainsString("{$method}() is not available through wsbridge", $e->getMessage());
            }
        }
        $this->expectException(UnsupportedException::class);
        ConnectionResponse::create(1, 7);
    }

    public function testTheHandlerGivesEachEventItsConnection(): void
    {
        $rpc = new RecordingRPC();
        $controller = new RecordingController();
        $handler = (new EventHandler($controller, new Sender($rpc)))->withServerStyle(EventHandler::STYLE_COROUTINE);
        $batch = '{"node":0,"events":[{"type":"open","fd":4,"seq":1,"time":5,"path":"/","query":"","headers":{},"remote_addr":"10.0.0.1:1"},'
            . '{"type":"open","fd":5,"seq":1,"time":5,"path":"/","query":"","headers":{},"remote_addr":"10.0.0.1:2"},'
            . '{"type":"message","fd":4,"seq":2,"time":6,"opcode":1,"data":"hi"},'
            . '{"type":"close","fd":5,"seq":2,"time":7,"code":1000,"reason":"","by":"client"}]}';
        self::assertSame(204, $handler->handle($batch, ['X-Wsbridge-Kind' => 'events'])->status);
        $fds = [];
        foreach ($controller->calls as [$event, $server]) {
            self::assertInstanceOf(ConnectionResponse::class, $server);
            $fds[] = "{$event} {$server->fd} seq " . $server->event()?->seq;
        }
        self::assertSame(['open 4 seq 1', 'open 5 seq 1', 'message 4 seq 2', 'close 5 seq 2'], $fds);
        self::assertSame(EventHandler::STYLE_ASYNC, (new EventHandler($controller, new Sender($rpc)))->serverStyle());
        $this->expectException(InvalidArgumentException::class);
        $handler->withServerStyle('process');
    }
}
