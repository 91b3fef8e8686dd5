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
 * The $server a WebSocket controller receives from the events handler: a
 * Swoole\WebSocket\Server (Swoole's own class when the extension is loaded,
 * the polyfill's stand-in otherwise), so that controllers that type-hint it
 * and hyperf/engine's WebSocket\Response (which pushes only through a
 * Swoole server or response) work unchanged. Its methods go to the bridge
 * through WsBridge\Sender:
 *
 *   push(int $fd, $data, int $opcode = 1, int|bool $flags = SWOOLE_WEBSOCKET_FLAG_FIN): bool
 *     ($data may be a Swoole\WebSocket\Frame or a hyperf/engine FrameInterface)
 *   disconnect(int $fd, int $code = 1000, string $reason = ''): bool
 *   close(int $fd): bool (a disconnect with code 1000), ping(int $fd, string $data = '')
 *   exist / exists / isEstablished(int $fd): bool
 *   getClientInfo / connection_info(int $fd): array|false (from Sender.Info)
 *   $server->connections: the bridge's fds (count, isset, foreach)
 *   stats(): the bridge's Sender.Stats
 *
 * Every other method of Swoole's server (task, sendfile, start, reload,
 * getWorkerId, ...) has no meaning when the bridge holds the connections and
 * throws UnsupportedException. The Swoole server object is never constructed:
 * none of Swoole's own methods run.
 *
 * sender() gives the whole wsbridge API (groups, users, broadcast), and
 * event() the event being dispatched.
 */
class Server extends \Swoole\WebSocket\Server
{
    private ?Event $event = null;
    private ConnectionIterator $fds;

    /**
     * @param (\Closure(int $after, int $limit): array{list<int>, ?int})|null $listFds
     *        lists open fds, a page at a time (AdminConnections); without it,
     *        Sender.Connections does
     */
    public function __construct(private readonly Sender $sender, ?\Closure $listFds = null)
    {
        // Not parent::__construct(): that would create a Swoole server. The
        // typed $connections of Swoole's class is unset so that __get serves it.
        unset($this->connections);
        $this->fds = new ConnectionIterator($sender, $listFds);
    }

    public function __get(string $name): mixed
    {
        if ($name === 'connections') {
            return $this->fds;
        }
        \trigger_error('Undefined property: ' . static::class . '::$' . $name, \E_USER_WARNING);
        return null;
    }

    public function __isset(string $name): bool
    {
        return $name === 'connections';
    }

    public function __destruct()
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
     * $fd's connection as Hyperf's coroutine server gives it to controllers:
     * a Swoole\Http\Response whose push() and close() reach that fd.
     */
    public function connection(int $fd): ConnectionResponse
    {
        return (new ConnectionResponse($this->withEvent(null), $fd))->withEvent($this->event);
    }

    /**
     * $flags is Swoole's: SWOOLE_WEBSOCKET_FLAG_FIN (1) ends the message,
     * without it the message continues with the next push; a bool is the
     * older "finish" argument. A frame object as $data brings its own
     * opcode and FIN bit, as with Swoole.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function push($fd, $data, $opcode = Sender::OPCODE_TEXT, $flags = 1): bool
    {
        if ($data instanceof \Swoole\WebSocket\Frame || \is_a($data, Sender::ENGINE_FRAME)) {
            return $this->sender->push((int) $fd, $data);
        }
        return $this->sender->push((int) $fd, $data, $opcode === null ? null : (int) $opcode, Sender::finish($flags));
    }

    /**
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function disconnect($fd, $code = 1000, $reason = ''): bool
    {
        return $this->sender->disconnect((int) $fd, $code === null ? null : (int) $code, $reason === null ? null : (string) $reason);
    }

    /**
     * Swoole 6's ping($fd, $data).
     */
    public function ping($fd, $data = ''): bool
    {
        return $this->sender->push((int) $fd, (string) $data, Sender::OPCODE_PING);
    }

    /**
     * Swoole's close($fd, $reset): here a disconnect with code 1000.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function close($fd, $reset = false): bool
    {
        return $this->sender->disconnect((int) $fd);
    }

    /**
     * @throws ConnectionException|ProtocolException
     */
    public function exist($fd): bool
    {
        return $this->sender->check($fd);
    }

    /**
     * @throws ConnectionException|ProtocolException
     */
    public function exists($fd): bool
    {
        return $this->sender->check($fd);
    }

    /**
     * @throws ConnectionException|ProtocolException
     */
    public function isEstablished($fd): bool
    {
        return $this->sender->check($fd);
    }

    /**
     * What Swoole's getClientInfo answers, from the bridge's Sender.Info:
     * remote_ip, remote_port, server_port (from the Host header, else 80),
     * connect_time, last_time (the connect time: the bridge does not say),
     * websocket_status (3, active), uid (the bound user when numeric),
     * worker_id (the bridge's worker partition), and the bridge's own keys
     * under "wsbridge" (path, query, headers, groups, user). false when the
     * fd is not open.
     *
     * @return array<string, mixed>|false
     */
    public function getClientInfo($fd, $reactor_id = -1, $ignoreError = false): array|false
    {
        $info = $this->sender->info((int) $fd);
        if ($info === null) {
            return false;
        }
        $remote = (string) ($info['remote_addr'] ?? '');
        $host = $remote;
        $port = 0;
        if (\preg_match('/^\[?(.*?)\]?:(\d+)$/D', $remote, $m) === 1) {
            [$host, $port] = [$m[1], (int) $m[2]];
        }
        $hostHeader = (string) ($info['headers']['Host'][0] ?? '');
        $out = [
            'server_port' => \preg_match('/:(\d{1,5})$/D', $hostHeader, $p) === 1 ? (int) $p[1] : 80,
            'server_fd' => 0,
            'socket_fd' => 0,
            'socket_type' => 1,
            'remote_port' => $port,
            'remote_ip' => $host,
            'reactor_id' => 0,
            'connect_time' => (int) ($info['connected_at'] ?? 0),
            'last_time' => (int) ($info['connected_at'] ?? 0),
            'close_errno' => 0,
            'websocket_status' => 3, // SWOOLE_WEBSOCKET_STATUS_ACTIVE
            'worker_id' => (int) ($info['worker'] ?? 0),
            'wsbridge' => $info,
        ];
        $user = (string) ($info['user'] ?? '');
        if ($user !== '' && \ctype_digit($user)) {
            $out['uid'] = (int) $user;
        }
        return $out;
    }

    /**
     * @return array<string, mixed>|false
     */
    // phpcs:ignore PSR1.Methods.CamelCapsMethodName.NotCamelCaps -- Swoole's name
    public function connection_info($fd, $reactor_id = -1, $ignoreError = false): array|false
    {
        return $this->getClientInfo($fd, $reactor_id, $ignoreError);
    }

    /**
     * The bridge's Sender.Stats (connections, workers, rpc_connections),
     * with Swoole's connection_num.
     *
     * @return array<string, mixed>
     */
    public function stats(): array
    {
        $stats = $this->sender->stats();
        return ['connection_num' => (int) ($stats['connections'] ?? 0)] + $stats;
    }

    // Swoole's server methods that have no meaning behind the bridge. Variadic
    // parameters fit every version's signature; never fits every return type.

    public function listen(...$args): never
    {
        throw self::unsupported('listen');
    }

    public function addlistener(...$args): never
    {
        throw self::unsupported('addlistener');
    }

    public function on(...$args): never
    {
        throw self::unsupported('on');
    }

    public function getCallback(...$args): never
    {
        throw self::unsupported('getCallback');
    }

    public function set(...$args): never
    {
        throw self::unsupported('set');
    }

    public function start(...$args): never
    {
        throw self::unsupported('start');
    }

    public function send(...$args): never
    {
        throw self::unsupported('send');
    }

    public function sendto(...$args): never
    {
        throw self::unsupported('sendto');
    }

    public function sendwait(...$args): never
    {
        throw self::unsupported('sendwait');
    }

    public function protect(...$args): never
    {
        throw self::unsupported('protect');
    }

    public function sendfile(...$args): never
    {
        throw self::unsupported('sendfile');
    }

    public function confirm(...$args): never
    {
        throw self::unsupported('confirm');
    }

    public function pause(...$args): never
    {
        throw self::unsupported('pause');
    }

    public function resume(...$args): never
    {
        throw self::unsupported('resume');
    }

    public function task(...$args): never
    {
        throw self::unsupported('task');
    }

    public function taskwait(...$args): never
    {
        throw self::unsupported('taskwait');
    }

    public function taskWaitMulti(...$args): never
    {
        throw self::unsupported('taskWaitMulti');
    }

    public function taskCo(...$args): never
    {
        throw self::unsupported('taskCo');
    }

    /**
     * Swoole's task finish($data) (the push flags helper is Sender::finish()).
     */
    public function finish(...$args): never
    {
        throw self::unsupported('finish');
    }

    public function reload(...$args): never
    {
        throw self::unsupported('reload');
    }

    public function shutdown(...$args): never
    {
        throw self::unsupported('shutdown');
    }

    public function stop(...$args): never
    {
        throw self::unsupported('stop');
    }

    public function getLastError(...$args): never
    {
        throw self::unsupported('getLastError');
    }

    public function heartbeat(...$args): never
    {
        throw self::unsupported('heartbeat');
    }

    public function getClientList(...$args): never
    {
        throw self::unsupported('getClientList');
    }

    // phpcs:ignore PSR1.Methods.CamelCapsMethodName.NotCamelCaps -- Swoole's name
    public function connection_list(...$args): never
    {
        throw self::unsupported('connection_list');
    }

    public function getWorkerId(...$args): never
    {
        throw self::unsupported('getWorkerId');
    }

    public function getWorkerPid(...$args): never
    {
        throw self::unsupported('getWorkerPid');
    }

    public function getWorkerStatus(...$args): never
    {
        throw self::unsupported('getWorkerStatus');
    }

    public function getManagerPid(...$args): never
    {
        throw self::unsupported('getManagerPid');
    }

    public function getMasterPid(...$args): never
    {
        throw self::unsupported('getMasterPid');
    }

    public function sendMessage(...$args): never
    {
        throw self::unsupported('sendMessage');
    }

    public function command(...$args): never
    {
        throw self::unsupported('command');
    }

    public function addCommand(...$args): never
    {
        throw self::unsupported('addCommand');
    }

    public function addProcess(...$args): never
    {
        throw self::unsupported('addProcess');
    }

    public function getSocket(...$args): never
    {
        throw self::unsupported('getSocket');
    }

    public function bind(...$args): never
    {
        throw self::unsupported('bind (use sender()->bind($fd, $user))');
    }

    /**
     * @param array<mixed> $arguments
     */
    public function __call(string $name, array $arguments): never
    {
        throw self::unsupported($name);
    }

    private static function unsupported(string $name): UnsupportedException
    {
        return new UnsupportedException(
            "Swoole's server method {$name}() is not available through wsbridge; use push, disconnect, close, "
            . 'exist, isEstablished, getClientInfo, connections, or sender() for the wsbridge API'
        );
    }
}
