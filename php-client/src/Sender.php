<?php

declare(strict_types=1);

namespace WsBridge;

use WsBridge\Exception\ConnectionException;
use WsBridge\Exception\InvalidArgumentException;
use WsBridge\Exception\NotDeliveredException;
use WsBridge\Exception\ProtocolException;
use WsBridge\Exception\ServiceException;
use WsBridge\Goridge\RPC;
use WsBridge\Goridge\RPCInterface;

/**
 * Pushes to WebSocket connections held by wsbridge, with the method names
 * and argument order of Hyperf\WebSocketServer\Sender
 * (hyperf/hyperf src/websocket-server/src/Sender.php):
 *
 *   push(int $fd, $data, ?int $opcode = null, $finish = null)
 *   disconnect(int $fd, ?int $code = null, ?string $reason = null)
 *   check($fd): bool
 *
 * Hyperf's versions return nothing; these return whether the bridge accepted
 * the call. A push to an fd that is not open returns false; in strict mode
 * (withStrict()) it throws NotDeliveredException instead. Invalid input
 * (a negative fd, an unknown opcode, an oversized message) always throws
 * ServiceException with the bridge's error code.
 *
 * One Sender holds one persistent connection: share it within a process,
 * but not between coroutines that run at once (Swoole, Swow): there, give it
 * a WsBridge\Hyperf\CoroutineRPC, which lends each coroutine a connection.
 * WsBridge\Hyperf\HyperfSender puts it in place of Hyperf's Sender.
 */
class Sender
{
    public const OPCODE_CONTINUATION = 0;
    public const OPCODE_TEXT = 1;
    public const OPCODE_BINARY = 2;
    public const OPCODE_PING = 9;
    public const OPCODE_PONG = 10;

    /** The bits of an fd below its node id (docs/PROTOCOL.md, "fds"). */
    public const SEQ_BITS = 43;

    /** hyperf/engine-contract's frame, named as a string: Hyperf may be absent. */
    public const ENGINE_FRAME = 'Hyperf\Engine\Contract\WebSocket\FrameInterface';

    public function __construct(
        private readonly RPCInterface $rpc,
        private bool $strict = false,
    ) {
    }

    /**
     * @param array{connect_timeout?: float, read_timeout?: float, retries?: int, retry_delay?: float, max_frame_size?: int, strict?: bool} $options
     */
    public static function create(string $address = 'tcp://127.0.0.1:6001', array $options = []): static
    {
        return new static(RPC::create($address, $options), (bool) ($options['strict'] ?? false));
    }

    /**
     * A copy that throws NotDeliveredException where this one returns false.
     */
    public function withStrict(bool $strict = true): static
    {
        $clone = clone $this;
        $clone->strict = $strict;
        return $clone;
    }

    public function isStrict(): bool
    {
        return $this->strict;
    }

    /**
     * Sends $data to $fd. $opcode: OPCODE_TEXT (default), OPCODE_BINARY,
     * OPCODE_PING, OPCODE_PONG. $finish=false starts (or continues) a
     * fragmented message: the next pushes to $fd continue it until one with
     * $finish=true. $finish may also be Swoole's $flags bitmask: the message
     * ends when SWOOLE_WEBSOCKET_FLAG_FIN (1) is set in it (the other flags,
     * RSV and compression, are the bridge's to choose).
     *
     * $data may be a frame object, as Swoole's push takes one: a
     * Swoole\WebSocket\Frame (data, opcode, flags or finish) or a hyperf/engine
     * FrameInterface (payload, opcode, FIN bit). Its payload is sent, not its
     * wire form; its opcode and FIN bit are used unless $opcode and $finish
     * are given.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function push(int $fd, $data, ?int $opcode = null, $finish = null): bool
    {
        [$data, $opcode, $finish] = self::unwrap($data, $opcode, $finish);
        $args = ['fd' => $fd] + $this->message($data, $opcode);
        $finish = self::finish($finish);
        if ($finish !== null) {
            $args['finish'] = $finish;
        }
        return $this->delivered((bool) $this->rpc->call('Sender.Push', $args), $fd, 'push');
    }

    /**
     * push() to an fd of another node of a cluster without waiting for that
     * node's answer: true once the node's channel took the message (false
     * says nothing then); the lowest latency for callers that do not need
     * the real answer. For an fd of the node this client talks to it is
     * push(), answered for real.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function pushWithoutAck(int $fd, $data, ?int $opcode = null): bool
    {
        [$data, $opcode] = self::unwrap($data, $opcode, null);
        $args = ['fd' => $fd, 'ack' => false] + $this->message($data, $opcode);
        return $this->delivered((bool) $this->rpc->call('Sender.Push', $args), $fd, 'push');
    }

    /**
     * The id of the node that holds $fd (its high bits): in a cluster, every
     * node accepts pushes to any fd, this only tells where it lives.
     */
    public static function nodeOf(int $fd): int
    {
        return $fd >> self::SEQ_BITS;
    }

    /**
     * Whether a push ends its message, from the older bool "finish" or
     * Swoole's $flags bitmask (SWOOLE_WEBSOCKET_FLAG_FIN is 1); null: not
     * said (the bridge's default: true).
     */
    public static function finish(mixed $flags): ?bool
    {
        if ($flags === null || \is_bool($flags)) {
            return $flags;
        }
        if (\is_int($flags)) {
            return ($flags & 1) === 1;
        }
        return (bool) $flags;
    }

    /**
     * A frame object's payload, opcode and FIN (explicit arguments win);
     * anything else as it is.
     *
     * @return array{mixed, ?int, mixed}
     */
    public static function unwrap(mixed $data, ?int $opcode, mixed $finish): array
    {
        if ($data instanceof \Swoole\WebSocket\Frame) {
            // As Swoole packs a Frame: finish, when set, decides; else the FIN bit of flags.
            $fin = isset($data->finish) ? (bool) $data->finish : ((int) ($data->flags ?? 1) & 1) === 1;
            return [(string) $data->data, $opcode ?? (int) $data->opcode, $finish ?? (bool) $fin];
        }
        if (\is_a($data, self::ENGINE_FRAME)) {
            return [(string) $data->getPayloadData(), $opcode ?? $data->getOpcode(), $finish ?? $data->getFin()];
        }
        return [$data, $opcode, $finish];
    }

    /**
     * Sends a close frame (after what is already queued for $fd) and closes.
     *
     * @throws ServiceException|ConnectionException|ProtocolException|NotDeliveredException
     */
    public function disconnect(int $fd, ?int $code = null, ?string $reason = null): bool
    {
        $args = ['fd' => $fd];
        if ($code !== null) {
            $args['code'] = $code;
        }
        if ($reason !== null && $reason !== '') {
            $args['reason'] = $reason;
        }
        return $this->delivered((bool) $this->rpc->call('Sender.Disconnect', $args), $fd, 'disconnect');
    }

    /**
     * Whether $fd is an open connection. Untyped like Hyperf's check($fd).
     */
    public function check($fd): bool
    {
        if (!\is_int($fd) && !(\is_string($fd) && \ctype_digit($fd))) {
            return false;
        }
        return (bool) $this->rpc->call('Sender.Check', ['fd' => (int) $fd]);
    }

    /**
     * Many pushes in one call, one result per message, in order. Each message
     * is ['fd' => int, 'data' => string, 'opcode' => ?int, 'finish' => ?bool].
     * The whole batch is checked before anything is sent.
     *
     * @param list<array{fd: int, data: string|\Stringable, opcode?: ?int, finish?: ?bool}> $messages
     * @return list<bool>
     */
    public function pushBatch(array $messages): array
    {
        $items = [];
        foreach ($messages as $i => $m) {
            if (!\is_array($m) || !isset($m['fd'], $m['data']) || !\is_int($m['fd'])) {
                throw new InvalidArgumentException("message {$i}: want ['fd' => int, 'data' => string, ...]");
            }
            [$data, $opcode, $finish] = self::unwrap($m['data'], $m['opcode'] ?? null, $m['finish'] ?? null);
            $item = ['fd' => $m['fd']] + $this->message($data, $opcode);
            $finish = self::finish($finish);
            if ($finish !== null) {
                $item['finish'] = $finish;
            }
            $items[] = $item;
        }
        if ($items === []) {
            return [];
        }
        return \array_map('boolval', (array) $this->rpc->call('Sender.PushBatch', ['messages' => $items]));
    }

    /**
     * The same message to each of $fds (the frame is encoded once); returns
     * how many open connections accepted it.
     *
     * @param list<int> $fds
     */
    public function pushMany(array $fds, $data, ?int $opcode = null): int
    {
        return (int) $this->rpc->call('Sender.PushMany', ['fds' => self::fds($fds)] + $this->message($data, $opcode));
    }

    /**
     * @param list<int> $except
     */
    public function broadcast($data, ?int $opcode = null, array $except = []): int
    {
        return (int) $this->rpc->call('Sender.Broadcast', ['except' => self::fds($except)] + $this->message($data, $opcode));
    }

    public function join(int $fd, string $group): bool
    {
        return (bool) $this->rpc->call('Sender.Join', ['fd' => $fd, 'group' => $group]);
    }

    public function leave(int $fd, string $group): bool
    {
        return (bool) $this->rpc->call('Sender.Leave', ['fd' => $fd, 'group' => $group]);
    }

    /**
     * @param list<int> $except
     */
    public function pushGroup(string $group, $data, ?int $opcode = null, array $except = []): int
    {
        return (int) $this->rpc->call('Sender.PushGroup', ['group' => $group, 'except' => self::fds($except)] + $this->message($data, $opcode));
    }

    /**
     * @return list<int>
     */
    public function groupMembers(string $group): array
    {
        return (array) $this->rpc->call('Sender.GroupMembers', ['group' => $group]);
    }

    /**
     * @return list<string>
     */
    public function groupsOf(int $fd): array
    {
        return (array) $this->rpc->call('Sender.GroupsOf', ['fd' => $fd]);
    }

    /**
     * @return array<string, int> every group with its member count
     */
    public function groups(): array
    {
        return (array) $this->rpc->call('Sender.Groups', new \stdClass());
    }

    public function bind(int $fd, string|int $user): bool
    {
        return (bool) $this->rpc->call('Sender.Bind', ['fd' => $fd, 'user' => (string) $user]);
    }

    public function unbind(int $fd): bool
    {
        return (bool) $this->rpc->call('Sender.Unbind', ['fd' => $fd]);
    }

    public function pushUser(string|int $user, $data, ?int $opcode = null): int
    {
        return (int) $this->rpc->call('Sender.PushUser', ['user' => (string) $user] + $this->message($data, $opcode));
    }

    /**
     * @return list<int>
     */
    public function userFds(string|int $user): array
    {
        return (array) $this->rpc->call('Sender.UserFds', ['user' => (string) $user]);
    }

    /**
     * What the bridge knows of $fd's connection (remote_addr, path, query,
     * headers, subprotocol, connected_at, worker, groups, user), or null when
     * $fd is not open.
     *
     * @return array<string, mixed>|null
     */
    public function info(int $fd): ?array
    {
        $info = (array) $this->rpc->call('Sender.Info', ['fd' => $fd]);
        if (empty($info['connected'])) {
            return null;
        }
        unset($info['connected']);
        return $info;
    }

    /**
     * A page of the connections of the node this client talks to, in fd
     * order: those with an fd above $after (0: from the start), at most
     * $limit (1..1000), members of $group and bound to $user when given.
     * 'next_after' is the $after of the next page, null on the last.
     *
     * @return array{connections: list<array<string, mixed>>, next_after: ?int}
     */
    public function connections(int $after = 0, int $limit = 100, ?string $group = null, ?string $user = null): array
    {
        $args = ['after' => $after, 'limit' => $limit];
        if ($group !== null) {
            $args['group'] = $group;
        }
        if ($user !== null) {
            $args['user'] = $user;
        }
        $page = (array) $this->rpc->call('Sender.Connections', $args);
        return [
            'connections' => \array_values((array) ($page['connections'] ?? [])),
            'next_after' => isset($page['next_after']) ? (int) $page['next_after'] : null,
        ];
    }

    /**
     * @return array<string, mixed>
     */
    public function stats(): array
    {
        return (array) $this->rpc->call('Sender.Stats', new \stdClass());
    }

    /**
     * The wire form of a message: text goes as it is; binary data, control
     * payloads and text that is not UTF-8 go base64-encoded (JSON carries
     * only UTF-8; the bridge refuses text that is not UTF-8 with invalid_utf8).
     *
     * @return array{data: string, opcode?: int, encoding?: string}
     */
    private function message($data, ?int $opcode): array
    {
        if ($data instanceof \Swoole\WebSocket\Frame || \is_a($data, self::ENGINE_FRAME)) {
            [$data, $frameOpcode] = self::unwrap($data, $opcode, null);
            $opcode ??= $frameOpcode;
        }
        if ($data instanceof \Stringable) {
            $data = (string) $data;
        }
        if (!\is_string($data)) {
            throw new InvalidArgumentException('data must be a string, got ' . \get_debug_type($data));
        }
        $m = ['data' => $data];
        if ($opcode !== null) {
            $m['opcode'] = $opcode;
        }
        $text = $opcode === null || $opcode === self::OPCODE_TEXT || $opcode === self::OPCODE_CONTINUATION;
        if (!$text || \preg_match('//u', $data) !== 1) {
            $m['data'] = \base64_encode($data);
            $m['encoding'] = 'base64';
        }
        return $m;
    }

    /**
     * @param array<mixed> $fds
     * @return list<int>
     */
    private static function fds(array $fds): array
    {
        $out = [];
        foreach ($fds as $fd) {
            if (!\is_int($fd)) {
                throw new InvalidArgumentException('fds must be integers, got ' . \get_debug_type($fd));
            }
            $out[] = $fd;
        }
        return $out;
    }

    private function delivered(bool $ok, int $fd, string $what): bool
    {
        if (!$ok && $this->strict) {
            throw new NotDeliveredException("{$what} to fd {$fd} was not delivered: no open connection has this fd (or its send queue is full)", $fd);
        }
        return $ok;
    }
}
