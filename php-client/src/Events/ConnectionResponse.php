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
 * The $server a WebSocket controller receives in Hyperf's coroutine server
 * style ('type' => Hyperf\Server\CoroutineServer::class): the connection's
 * own Swoole\Http\Response (Swoole's class when the extension is loaded,
 * the polyfill's stand-in otherwise). hyperf/hyperf v3.1.71 and v3.2.4
 * src/websocket-server/src/Server.php pass that response to onOpen,
 * onMessage and onClose (hyperf/engine v2.15.0 src/WebSocket/WebSocket.php
 * calls the message and close callbacks with it), and a controller writes
 * to its connection with push($data) and ends it with close(), no fd.
 *
 * Here the methods go to the bridge, to this connection's fd:
 *
 *   push(string|Swoole\WebSocket\Frame $data, int $opcode = 1, int $flags = SWOOLE_WEBSOCKET_FLAG_FIN): bool
 *   close(): bool (a close frame with code 1000), disconnect(int $code = 1000, string $reason = ''): bool
 *   ping(string $data = ''): bool, isWritable(): bool (the connection is open)
 *   $response->fd: the connection's fd
 *
 * hyperf/engine's WebSocket\Response accepts it (it pushes through a
 * Swoole\Http\Response), so controllers of either style work. A
 * Swoole\Http\Response reaches only its own connection: server() gives the
 * Events\Server that pushes to any fd, sender() the whole wsbridge API,
 * event() the event being dispatched.
 *
 * The HTTP half of Swoole's response (status, header, cookie, write, end,
 * sendfile, redirect, detach, create) and recv() (the bridge delivers the
 * frames as onMessage events) throw UnsupportedException. The Swoole
 * object is never constructed: none of Swoole's own methods run.
 */
class ConnectionResponse extends \Swoole\Http\Response
{
    private ?Event $event = null;

    public function __construct(private readonly Server $server, int $fd)
    {
        // Not parent::__construct(): nothing of Swoole's response is set up.
        $this->fd = $fd;
    }

    public function __destruct()
    {
    }

    /**
     * A copy that carries the event being dispatched.
     */
    public function withEvent(?Event $event): static
    {
        $clone = clone $this;
        $clone->event = $event;
        return $clone;
    }

    /**
     * The event this call was dispatched for (seq, close code and reason, user, groups).
     */
    public function event(): ?Event
    {
        return $this->event;
    }

    /**
     * The server side of the bridge: push to, disconnect or inspect any fd.
     */
    public function server(): Server
    {
        return $this->server->withEvent($this->event);
    }

    public function sender(): Sender
    {
        return $this->server->sender();
    }

    public function getFd(): int
    {
        return $this->fd;
    }

    /**
     * Swoole's push($data, $opcode, $flags) to this connection: $flags is
     * the SWOOLE_WEBSOCKET_FLAG_* bitmask (FIN ends the message); a frame
     * object as $data brings its own opcode and FIN bit.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function push($data, $opcode = Sender::OPCODE_TEXT, $flags = 1): bool
    {
        return $this->server->push($this->fd, $data, $opcode, $flags);
    }

    /**
     * Swoole's close(): here the bridge sends a close frame (1000) and drops the connection.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function close(): bool
    {
        return $this->server->disconnect($this->fd);
    }

    /**
     * Swoole 6.1's disconnect($code, $reason): a close frame with them.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function disconnect($code = 1000, $reason = ''): bool
    {
        return $this->server->disconnect($this->fd, $code, $reason);
    }

    /**
     * Swoole 6.1's ping($data): a ping frame to this connection.
     */
    public function ping($data = ''): bool
    {
        return $this->server->ping($this->fd, $data);
    }

    /**
     * Whether the connection is still open on the bridge.
     *
     * @throws ConnectionException|ProtocolException
     */
    public function isWritable(): bool
    {
        return $this->server->exist($this->fd);
    }

    /**
     * The connection was upgraded by the bridge: true, nothing to do.
     */
    public function upgrade(): bool
    {
        return true;
    }

    // The rest of Swoole's response: the HTTP exchange is the bridge's, and
    // frames arrive as onMessage events. Variadic parameters fit every
    // version's signature; never fits every return type.

    public function recv(...$args): never
    {
        throw self::unsupported('recv', ' (the bridge delivers each message to onMessage)');
    }

    public function initHeader(...$args): never
    {
        throw self::unsupported('initHeader');
    }

    public function cookie(...$args): never
    {
        throw self::unsupported('cookie');
    }

    public function setCookie(...$args): never
    {
        throw self::unsupported('setCookie');
    }

    public function rawcookie(...$args): never
    {
        throw self::unsupported('rawcookie');
    }

    public function setRawCookie(...$args): never
    {
        throw self::unsupported('setRawCookie');
    }

    public function status(...$args): never
    {
        throw self::unsupported('status');
    }

    public function setStatusCode(...$args): never
    {
        throw self::unsupported('setStatusCode');
    }

    public function header(...$args): never
    {
        throw self::unsupported('header');
    }

    public function setHeader(...$args): never
    {
        throw self::unsupported('setHeader');
    }

    public function trailer(...$args): never
    {
        throw self::unsupported('trailer');
    }

    public function goaway(...$args): never
    {
        throw self::unsupported('goaway');
    }

    public function write(...$args): never
    {
        throw self::unsupported('write');
    }

    public function end(...$args): never
    {
        throw self::unsupported('end');
    }

    public function sendfile(...$args): never
    {
        throw self::unsupported('sendfile');
    }

    public function redirect(...$args): never
    {
        throw self::unsupported('redirect');
    }

    public function detach(...$args): never
    {
        throw self::unsupported('detach');
    }

    public static function create(...$args): never
    {
        throw self::unsupported('create');
    }

    /**
     * @param array<mixed> $arguments
     */
    public function __call(string $name, array $arguments): never
    {
        throw self::unsupported($name);
    }

    private static function unsupported(string $name, string $why = ''): UnsupportedException
    {
        return new UnsupportedException(
            "Swoole's response method {$name}() is not available through wsbridge{$why}; use push, close, disconnect, "
            . 'ping, isWritable, or server() to reach other connections'
        );
    }
}
