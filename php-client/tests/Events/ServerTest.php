<?php

declare(strict_types=1);

namespace WsBridge\Tests\Events;

use PHPUnit\Framework\TestCase;
use WsBridge\Events\EventHandler;
use WsBridge\Events\Server;
use WsBridge\Sender;
use WsBridge\Tests\Support\Bridge;
use WsBridge\Tests\Support\RecordingController;
use WsBridge\Tests\Support\RecordingRPC;
use WsBridge\Tests\Support\WsClient;

/**
 * The $server controllers receive: Swoole\WebSocket\Server's calls, sent
 * to the bridge.
 */
final class ServerTest extends TestCase
{
    public function testCallsBecomeSenderCalls(): void
    {
        $rpc = new RecordingRPC(['Sender.Check' => static fn (array $a): bool => $a['fd'] === 7]);
        $server = new Server(new Sender($rpc));
        self::assertTrue($server->push(7, 'hi'));
        self::assertTrue($server->push(7, "\x00", 2));
        self::assertTrue($server->push(7, 'part', 1, 0));     // no SWOOLE_WEBSOCKET_FLAG_FIN: the message goes on
        self::assertTrue($server->push(7, 'end', 0, 3));      // FIN | COMPRESS
        self::assertTrue($server->push(7, 'old style', 1, false));
        self::assertTrue($server->push(7, 'null opcode', null));
        self::assertTrue($server->disconnect(7, 4000, 'bye'));
        self::assertTrue($server->disconnect(7));
        self::assertTrue($server->close(7));
        self::assertTrue($server->exist(7));
        self::assertFalse($server->isEstablished(8));
        self::assertSame([
            'Sender.Push {"fd":7,"data":"hi","opcode":1,"finish":true}',
            'Sender.Push {"fd":7,"data":"AA==","opcode":2,"encoding":"base64","finish":true}',
            'Sender.Push {"fd":7,"data":"part","opcode":1,"finish":false}',
            'Sender.Push {"fd":7,"data":"end","opcode":0,"finish":true}',
            'Sender.Push {"fd":7,"data":"old style","opcode":1,"finish":false}',
            'Sender.Push {"fd":7,"data":"null opcode","finish":true}',
            'Sender.Disconnect {"fd":7,"code":4000,"reason":"bye"}',
            'Sender.Disconnect {"fd":7,"code":1000}',
            'Sender.Disconnect {"fd":7}',
            'Sender.Check {"fd":7}',
            'Sender.Check {"fd":8}',
        ], $rpc->lines());
        self::assertSame([null, true, false, true, false, true], [
            Sender::finish(null), Sender::finish(1), Sender::finish(2), Sender::finish(true), Sender::finish(false), Sender::finish('1'),
        ]);
    }

    public function testOtherSwooleMethodsSayWhatToUse(): void
    {
        $server = new Server(new Sender(new RecordingRPC()));
        $this->expectException(\WsBridge\Exception\UnsupportedException::class);
        $this->expectExceptionMessage('getClientList() is not available through wsbridge');
        $server->getClientList();
    }

    /**
     * End to end on the push side: the handler dispatches a message event
     * for a real connection, the controller answers through $server, and
     * the real bridge delivers it to the real client.
     */
    public function testAControllerAnswersARealClient(): void
    {
        $bridge = new Bridge();
        try {
            $sender = Sender::create($bridge->rpcAddr);
            $client = new WsClient($bridge->wsUrl . '/?id=server-test');
            $fd = $bridge->waitForFd();
            $controller = new RecordingController();
            $handler = new EventHandler($controller, $sender);
            $body = \json_encode(['node' => 0, 'events' => [
                ['type' => 'message', 'fd' => $fd, 'seq' => 2, 'time' => 1, 'opcode' => 1, 'data' => "echo caf\u{e9}"],
                ['type' => 'message', 'fd' => $fd, 'seq' => 3, 'time' => 2, 'opcode' => 2, 'data' => \base64_encode("echo \x00\x01\xff"), 'encoding' => 'base64'],
            ]]);
            self::assertSame(204, $handler->handle($body, ['X-Wsbridge-Kind' => 'events'])->status);
            $ev = $client->next();
            self::assertSame(['message', 1, "caf\u{e9}"], [$ev['event'], $ev['opcode'], $ev['data']]);
            $ev = $client->next();
            self::assertSame(['message', 2, "\x00\x01\xff"], [$ev['event'], $ev['opcode'], $ev['data']]);
            self::assertTrue($handler->server()->exist($fd));
            self::assertTrue($handler->server()->disconnect($fd, 4000, 'done'));
            $ev = $client->next();
            self::assertSame(['close', 4000, 'done'], [$ev['event'], $ev['code'], $ev['text']]);
            self::assertFalse($handler->server()->isEstablished($fd));
            self::assertFalse($handler->server()->push($fd, 'too late'));
        } finally {
            self::assertSame(0, $bridge->stop());
        }
    }
}
