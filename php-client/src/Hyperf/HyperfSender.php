<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Hyperf\Engine\Contract\WebSocket\FrameInterface;
use Hyperf\WebSocketServer\Sender;
use Psr\Container\ContainerInterface;
use WsBridge\Events\Server as EventsServer;
use WsBridge\Exception\ConnectionException;
use WsBridge\Exception\InvalidArgumentException;
use WsBridge\Exception\NotDeliveredException;
use WsBridge\Exception\ProtocolException;
use WsBridge\Exception\ServiceException;
use WsBridge\Exception\UnsupportedException;
use WsBridge\Sender as BridgeSender;

/**
 * Hyperf\WebSocketServer\Sender, sending through wsbridge: bound in its
 * place by ConfigProvider, so every call site of Hyperf's Sender (push,
 * disconnect, check, pushFrame, the pipe-message listener's proxy) reaches
 * the connections the bridge holds, from any worker or server, in one hop.
 *
 * Every public and protected method of hyperf/hyperf
 * src/websocket-server/src/Sender.php is overridden with a signature
 * compatible with both v3.1.x and v3.2.x (they differ only in __call), so this class only loads where Hyperf's Sender exists: it is
 * reached through HyperfSenderFactory, never referenced eagerly.
 *
 * Results are the bridge's: push and disconnect return false for an fd that
 * is not open (or throw NotDeliveredException with wsbridge.rpc.strict).
 * The responses of Hyperf's coroutine server: getResponse($fd) and
 * getResponses() give a Swoole\Http\Response for each open fd of the
 * bridge (an Events\ConnectionResponse), whose push() and close() reach it
 * through the bridge.
 */
class HyperfSender extends Sender
{
    private readonly BridgeSender $bridge;
    private ?EventsServer $server = null;

    public function __construct(ContainerInterface $container)
    {
        parent::__construct($container);
        $this->bridge = $container->get(BridgeSender::class);
    }

    /**
     * push(int $fd, $data, ?int $opcode = null, $finish = null) and
     * disconnect(int $fd, ?int $code = null, ?string $reason = null), as
     * Hyperf's @method tags declare them; named arguments work too.
     *
     * Untyped parameters and a mixed return: compatible with Hyperf 3.1's
     * __call($name, $arguments) and 3.2's __call(string $name, array
     * $arguments): mixed alike.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function __call($name, $arguments): mixed
    {
        [$fd, $method] = $this->getFdAndMethodFromProxyMethod($name, $arguments);
        return $this->proxy($fd, $method, $arguments);
    }

    /**
     * A frame of hyperf/engine: its payload, opcode and FIN bit; a close
     * frame becomes a disconnect with the code and reason it carries.
     */
    public function pushFrame(int $fd, FrameInterface $frame): bool
    {
        $payload = (string) $frame->getPayloadData();
        if ($frame->getOpcode() === 8) {
            $code = \strlen($payload) >= 2 ? \unpack('n', $payload)[1] : null;
            return $this->bridge->disconnect($fd, $code, $code === null ? null : \substr($payload, 2));
        }
        return $this->bridge->push($fd, $payload, $frame->getOpcode(), $frame->getFin());
    }

    /**
     * Runs push or disconnect ($arguments as given to __call, the fd first)
     * on the bridge and returns its result.
     */
    public function proxy(int $fd, string $method, array $arguments): bool
    {
        [, $method] = $this->getFdAndMethodFromProxyMethod($method, [$fd]);
        if ($method === 'push') {
            return $this->bridge->push(
                $fd,
                self::argument($arguments, 1, 'data', ''),
                self::argument($arguments, 2, 'opcode'),
                BridgeSender::finish(self::argument($arguments, 3, 'finish', self::argument($arguments, 3, 'flags'))),
            );
        }
        $reason = self::argument($arguments, 2, 'reason');
        return $this->bridge->disconnect($fd, self::argument($arguments, 1, 'code'), $reason === null ? null : (string) $reason);
    }

    public function setWorkerId(int $workerId): void
    {
        $this->workerId = $workerId;
    }

    /**
     * Whether $fd is open on the bridge (any node of its cluster).
     */
    public function check($fd): bool
    {
        return $this->bridge->check($fd);
    }

    /**
     * @param null|mixed $response
     */
    public function setResponse(int $fd, mixed $response): void
    {
        if ($response === null) {
            unset($this->responses[$fd]);
        } else {
            $this->responses[$fd] = $response;
        }
    }

    /**
     * What Hyperf's coroutine server keeps per connection: $fd's
     * Swoole\Http\Response, to push($data) or close() it. Behind the bridge
     * any open fd has one (a ConnectionResponse sending through the
     * bridge); null when the fd is not open, as Hyperf answers for an fd
     * this worker does not hold.
     *
     * @throws ConnectionException|ProtocolException
     */
    public function getResponse(int $fd): mixed
    {
        if (isset($this->responses[$fd])) {
            return $this->responses[$fd];
        }
        return $this->bridge->check($fd) ? $this->server()->connection($fd) : null;
    }

    /**
     * fd => response of every open connection of the bridge node this
     * worker talks to (Sender.Connections, page by page), as Hyperf's
     * coroutine server lists its worker's: a broadcast over it is one push
     * per fd; sender()->broadcast() is one call.
     *
     * @throws ConnectionException|ProtocolException
     */
    public function getResponses(): array
    {
        $out = $this->responses;
        $server = $this->server();
        foreach ($server->connections as $fd) {
            $out[$fd] ??= $server->connection($fd);
        }
        return $out;
    }

    private function server(): EventsServer
    {
        return $this->server ??= new EventsServer($this->bridge);
    }

    /**
     * [fd, method] of a push or disconnect call; anything else is refused
     * as Hyperf refuses it (InvalidMethodException).
     */
    public function getFdAndMethodFromProxyMethod(string $method, array $arguments): array
    {
        if ($method !== 'push' && $method !== 'disconnect') {
            $message = \sprintf('Method [%s] is not allowed.', $method);
            $class = 'Hyperf\WebSocketServer\Exception\InvalidMethodException';
            throw \class_exists($class) ? new $class($message) : new UnsupportedException($message);
        }
        $fd = self::argument($arguments, 0, 'fd');
        if ($fd === null) {
            throw new InvalidArgumentException("{$method}() needs an fd");
        }
        return [(int) $fd, $method];
    }

    /**
     * The wsbridge Sender behind this one: groups, users, broadcast,
     * batches, connection info.
     */
    public function bridge(): BridgeSender
    {
        return $this->bridge;
    }

    /**
     * No pipe messages between workers: the bridge reaches every
     * connection, so the call goes to it directly.
     */
    protected function sendPipeMessage(string $name, array $arguments): void
    {
        [$fd, $method] = $this->getFdAndMethodFromProxyMethod($name, $arguments);
        $this->proxy($fd, $method, $arguments);
    }

    /**
     * @param array<int|string, mixed> $arguments
     */
    private static function argument(array $arguments, int $position, string $name, mixed $default = null): mixed
    {
        if (\array_key_exists($position, $arguments)) {
            return $arguments[$position];
        }
        return $arguments[$name] ?? $default;
    }
}
