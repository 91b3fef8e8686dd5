<?php

declare(strict_types=1);

namespace Chat;

use Hyperf\Engine\WebSocket\Frame;
use Hyperf\Engine\WebSocket\Response;
use WsBridge\Context\ConnectionContext;

/**
 * A chat room as a Hyperf WebSocket controller: the same three methods a
 * Hyperf app declares (in Hyperf it would also say `implements
 * OnOpenInterface, OnMessageInterface, OnCloseInterface`), called here by
 * WsBridge\Events\EventHandler with the events the bridge posts, and
 * written in the style of Hyperf's documentation: it answers with the engine
 * Response and Frame, and keeps each connection's name and room in the
 * connection context (set in onOpen, read in onMessage and onClose).
 *
 * A client connects to the bridge with ?name=...&room=... in the URL, sends
 * plain text, and receives JSON:
 *
 *   {"type":"welcome","fd":1,"name":"alice","room":"lobby","members":[{"fd":1,"name":"alice"}]}
 *   {"type":"join","fd":2,"name":"bob"}
 *   {"type":"message","fd":1,"name":"alice","text":"hi","time":1764050000200}
 *   {"type":"leave","fd":2,"name":"bob"}
 *   {"type":"error","text":"..."}
 *
 * $server is WsBridge\Events\Server (a Swoole\WebSocket\Server), and
 * $server->sender() gives what Swoole has no method for (rooms).
 */
final class ChatController
{
    public const MAX_NAME = 32;
    public const MAX_TEXT = 2000;

    public function __construct(private readonly ConnectionContext $context)
    {
    }

    public function onOpen($server, $request): void
    {
        $fd = $request->fd;
        $name = self::clean($request->get['name'] ?? null, self::MAX_NAME) ?: "guest-{$fd}";
        $room = self::clean($request->get['room'] ?? null, self::MAX_NAME) ?: 'lobby';
        $this->context->set('name', $name);
        $this->context->set('room', $room);

        $sender = $server->sender();
        $sender->join($fd, self::group($room));
        $members = [];
        foreach ($sender->groupMembers(self::group($room)) as $member) {
            $members[] = ['fd' => $member, 'name' => $this->context->get('name', "#{$member}", $member)];
        }
        (new Response($server))->init($request)->push(new Frame(payloadData: self::json([
            'type' => 'welcome', 'fd' => $fd, 'name' => $name, 'room' => $room, 'members' => $members,
        ])));
        $sender->pushGroup(self::group($room), self::json(['type' => 'join', 'fd' => $fd, 'name' => $name]), null, [$fd]);
    }

    public function onMessage($server, $frame): void
    {
        $response = (new Response($server))->init($frame);
        if ($frame->opcode !== 1) {
            $response->push(new Frame(payloadData: self::json(['type' => 'error', 'text' => 'send text: binary messages are not understood'])));
            return;
        }
        $text = self::clean($frame->data, self::MAX_TEXT);
        if ($text === '') {
            return;
        }
        $name = $this->context->get('name');
        $room = $this->context->get('room');
        if ($name === null || $room === null) { // its open event was lost: greet it again
            $response->push(new Frame(payloadData: self::json(['type' => 'error', 'text' => 'who are you? reconnect, please'])));
            return;
        }
        // To everyone in the room, the sender included: its own copy is the
        // proof that the message went round.
        $server->sender()->pushGroup(self::group($room), self::json([
            'type' => 'message',
            'fd' => $frame->fd,
            'name' => $name,
            'text' => $text,
            'time' => $server->event()?->time ?? (int) (\microtime(true) * 1000),
        ]));
    }

    public function onClose($server, int $fd, int $reactorId): void
    {
        // The connection has left its groups already: its room is in the
        // context, which the handler releases after this returns.
        $name = $this->context->get('name');
        $room = $this->context->get('room');
        if ($name !== null && $room !== null) {
            $server->sender()->pushGroup(self::group($room), self::json(['type' => 'leave', 'fd' => $fd, 'name' => $name]));
        }
    }

    private static function group(string $room): string
    {
        return "room:{$room}";
    }

    /**
     * $value as one line of at most $max characters without control
     * characters ('' for anything else than a string).
     */
    private static function clean(mixed $value, int $max): string
    {
        if (!\is_string($value)) {
            return '';
        }
        $value = \preg_replace('/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/u', ' ', $value);
        if ($value === null || \preg_match('/^.{0,' . $max . '}/su', \trim($value), $m) !== 1) {
            return ''; // not UTF-8
        }
        return \trim($m[0]);
    }

    private static function json(array $message): string
    {
        return \json_encode($message, \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_UNICODE | \JSON_UNESCAPED_SLASHES);
    }
}
