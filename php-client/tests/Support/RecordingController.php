<?php

declare(strict_types=1);

namespace WsBridge\Tests\Support;

use Swoole\Http\Request;
use Swoole\WebSocket\Frame;

/**
 * A WebSocket controller that records every call, in order. A message
 * "boom" throws; a message "echo ..." is pushed back through $server.
 */
final class RecordingController
{
    /** @var list<array{string, mixed, mixed}> [event, $server, request|frame|[fd, reactorId]] */
    public array $calls = [];

    public function onOpen($server, Request $request): void
    {
        $this->calls[] = ['open', $server, $request];
    }

    public function onMessage($server, Frame $frame): void
    {
        $this->calls[] = ['message', $server, $frame];
        if ($frame->data === 'boom') {
            throw new \DomainException("boom on fd {$frame->fd}");
        }
        if (\str_starts_with($frame->data, 'echo ')) {
            $server->push($frame->fd, \substr($frame->data, 5), $frame->opcode);
        }
    }

    public function onClose($server, int $fd, int $reactorId): void
    {
        $this->calls[] = ['close', $server, [$fd, $reactorId]];
    }

    /**
     * @return list<string> "open 7", "message 7 hello", "close 7 0"
     */
    public function summary(): array
    {
        return \array_map(static function (array $c): string {
            return match ($c[0]) {
                'open' => "open {$c[2]->fd}",
                'message' => "message {$c[2]->fd} {$c[2]->data}",
                'close' => "close {$c[2][0]} {$c[2][1]}",
            };
        }, $this->calls);
    }
}
