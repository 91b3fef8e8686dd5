<?php

declare(strict_types=1);

namespace Chat;

use Swoole\Http\Request;
use Swoole\WebSocket\Frame;

/**
 * A chat room as a Hyperf WebSocket controller: the same three methods a
 * Hyperf app declares (in Hyperf it would also say `implements
 * OnOpenInterface, OnMessageInterface, OnCloseInterface`), called here by
 * WsBridge\Events\EventHandler with the events the bridge posts.
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
 * $server is WsBridge\Events\Server: push() as on Swoole's server, and
 * sender() for what Swoole has no method for (rooms).
 */
final class ChatController
{
    public const MAX_NAME = 32;
    public const MAX_TEXT = 2000;

    public function __construct(private readonly Members $members)
    {
    }

    public function onOpen($server, Request $request): void
    {
        $fd = $request->fd;
        $name = self::clean($request->get['name'] ?? null, self::MAX_NAME) ?: "guest-{$fd}";
        $room = self::clean($request->get['room'] ?? null, self::MAX_NAME) ?: 'lobby';
        $this->members->put(self::node($server), $fd, ['name' => $name, 'room' => $room]);

        $sender = $server->sender();
        $sender->join($fd, self::group($room));
        $members = [];
        foreach ($sender->groupMembers(self::group($room)) as $member) {
            $members[] = ['fd' => $member, 'name' => $this->members->get(self::node($server), $member)['name'] ?? "#{$member}"];
        }
        $server->push($fd, self::json(['type' => 'welcome', 'fd' => $fd, 'name' => $name, 'room' => $room, 'members' => $members]));
        $sender->pushGroup(self::group($room), self::json(['type' => 'join', 'fd' => $fd, 'name' => $name]), null, [$fd]);
    }

    public function onMessage($server, Frame $frame): void
    {
        if ($frame->opcode !== 1) {
            $server->push($frame->fd, self::json(['type' => 'error', 'text' => 'send text: binary messages are not understood']));
            return;
        }
        $text = self::clean($frame->data, self::MAX_TEXT);
        if ($text === '') {
            return;
        }
        $member = $this->members->get(self::node($server), $frame->fd);
        if ($member === null) { // its open event was lost: greet it again
            $server->push($frame->fd, self::json(['type' => 'error', 'text' => 'who are you? reconnect, please']));
            return;
        }
        // To everyone in the room, the sender included: its own copy is the
        // proof that the message went round.
        $server->sender()->pushGroup(self::group($member['room']), self::json([
            'type' => 'message',
            'fd' => $frame->fd,
            'name' => $member['name'],
            'text' => $text,
            'time' => $server->event()?->time ?? (int) (\microtime(true) * 1000),
        ]));
    }

    public function onClose($server, int $fd, int $reactorId): void
    {
        // The connection has left its groups already: the room is in Members.
        $member = $this->members->remove(self::node($server), $fd);
        if ($member !== null) {
            $server->sender()->pushGroup(self::group($member['room']), self::json(['type' => 'leave', 'fd' => $fd, 'name' => $member['name']]));
        }
    }

    private static function group(string $room): string
    {
        return "room:{$room}";
    }

    private static function node($server): int
    {
        return $server->event()?->node ?? 0;
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
