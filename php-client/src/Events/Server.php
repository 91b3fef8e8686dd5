<?php

declare(strict_types=1);

namespace WsBridge\Events;

use WsBridge\Exception\ConnectionException;
use WsBridge\Exception\NotDeliveredException;
use WsBridge\Exception\ProtocolException;
use WsBridge\Exception\ServiceException;
use WsBridge\Exception\UnsupportedException;
use WsBridge\Sender;

/**
 * The $server a WebSocket controller receives from the events handler:
 * the calls controllers make on Swoole\WebSocket\Server, sent to the bridge
 * through WsBridge\Sender.
 *
 *   push(int $fd, $data, int $opcode = 1, int|bool $flags = SWOOLE_WEBSOCKET_FLAG_FIN): bool
 *   disconnect(int $fd, int $code = 1000, string $reason = ''): bool
 *   exist(int $fd): bool, isEstablished(int $fd): bool
 *   close(int $fd): bool (a disconnect with code 1000)
 *
 * sender() gives the whole wsbridge API (groups, users, broadcast).
 */
class Server
{
    private ?Event $event = null;

    public function __construct(private readonly Sender $sender)
    {
    }

    public function sender(): Sender
    {
        return $this->sender;
    }

    /**
     * A copy that carries the event being dispatched: the handler gives
     * each controller call its own.
     */
    public function withEvent(?Event $event): static
    {
        $clone = clone $this;
        $clone->event = $event;
        return $clone;
    }

    /**
     * The event this call was dispatched for: what Swoole's signatures do
     * not carry, such as the close code and reason ($server->event()->code),
     * seq and time, or the user and groups bound at the handshake.
     */
    public function event(): ?Event
    {
        return $this->event;
    }

    /**
     * $flags is Swoole's: SWOOLE_WEBSOCKET_FLAG_FIN (1) ends the message,
     * without it the message continues with the next push; a bool is the
     * older "finish" argument.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function push(int $fd, $data, ?int $opcode = Sender::OPCODE_TEXT, int|bool|null $flags = 1): bool
    {
        return $this->sender->push($fd, $data, $opcode, self::finish($flags));
    }

    /**
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function disconnect(int $fd, ?int $code = 1000, ?string $reason = ''): bool
    {
        return $this->sender->disconnect($fd, $code, $reason);
    }

    /**
     * Swoole's close($fd, $reset): here a disconnect with code 1000.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function close(int $fd, bool $reset = false): bool
    {
        return $this->sender->disconnect($fd);
    }

    /**
     * @throws ConnectionException|ProtocolException
     */
    public function exist(int $fd): bool
    {
        return $this->sender->check($fd);
    }

    /**
     * @throws ConnectionException|ProtocolException
     */
    public function isEstablished(int $fd): bool
    {
        return $this->sender->check($fd);
    }

    /**
     * @param array<mixed> $arguments
     */
    public function __call(string $name, array $arguments): never
    {
        throw new UnsupportedException(
            "Swoole's server method {$name}() is not available through wsbridge; "
            . 'use push, disconnect, close, exist, isEstablished, or sender() for the wsbridge API'
        );
    }

    /**
     * Reads Swoole's push flags (or the older bool "finish"): whether the
     * push ends its message. null is "not said" (the bridge's default: true).
     */
    public static function finish(mixed $flags): ?bool
    {
        if ($flags === null || \is_bool($flags)) {
            return $flags;
        }
        if (\is_int($flags)) {
            return ($flags & 1) === 1; // SWOOLE_WEBSOCKET_FLAG_FIN
        }
        return (bool) $flags;
    }
}
