<?php

declare(strict_types=1);

namespace WsBridge\Events;

use WsBridge\Exception\InvalidRequestException;

/**
 * Decodes and checks the bodies the bridge posts. Everything is checked
 * before anything is dispatched: one bad event refuses the whole batch.
 *
 * @internal
 */
final class Parser
{
    /** Deep enough for the contract (headers are at depth 5), no deeper. */
    public const MAX_DEPTH = 8;
    /** fds are below 2^53 with a non-zero 43-bit sequence part (docs/PROTOCOL.md, "fds"). */
    public const MAX_FD = (1 << 53) - 1;
    private const SEQUENCE_MASK = (1 << 43) - 1;
    private const MAX_NODE = 1023;

    private function __construct()
    {
    }

    /**
     * @return list<Event> in the order of the batch
     * @throws InvalidRequestException
     */
    public static function batch(string $body): array
    {
        $root = self::json($body);
        $node = self::node($root);
        if (!\array_key_exists('events', $root) || !\is_array($root['events']) || !\array_is_list($root['events'])) {
            throw new InvalidRequestException('"events" must be a list');
        }
        $events = [];
        /** @var array<int, array{int, bool}> $lastSeq fd => [seq, closed] */
        $lastSeq = [];
        foreach ($root['events'] as $i => $raw) {
            $event = self::event($raw, $node, $i);
            if ($event === null) {
                continue; // a type this version does not know: skipped, for forward compatibility
            }
            [$seq, $closed] = $lastSeq[$event->fd] ?? [0, false];
            if ($closed) {
                throw new InvalidRequestException("event {$i}: fd {$event->fd} has an event after its close event");
            }
            if ($event->seq <= $seq) {
                throw new InvalidRequestException("event {$i}: seq {$event->seq} of fd {$event->fd} does not follow seq {$seq}");
            }
            $lastSeq[$event->fd] = [$event->seq, $event->type === Event::CLOSE];
            $events[] = $event;
        }
        return $events;
    }

    /**
     * The handshake of an auth request.
     *
     * @return array{node: int, path: string, query: string, headers: array<string, list<string>>, remote_addr: string}
     * @throws InvalidRequestException
     */
    public static function handshake(string $body): array
    {
        $root = self::json($body);
        return [
            'node' => self::node($root),
            'path' => self::string($root, 'path', 'auth request', true),
            'query' => self::string($root, 'query', 'auth request'),
            'headers' => self::headers($root, 'auth request'),
            'remote_addr' => self::string($root, 'remote_addr', 'auth request', true),
        ];
    }

    /**
     * @return array<mixed>
     * @throws InvalidRequestException
     */
    private static function json(string $body): array
    {
        try {
            $root = \json_decode($body, true, self::MAX_DEPTH, \JSON_THROW_ON_ERROR | \JSON_BIGINT_AS_STRING);
        } catch (\JsonException $e) {
            throw new InvalidRequestException('the body is not valid JSON (or nests deeper than ' . self::MAX_DEPTH . '): ' . $e->getMessage());
        }
        if (!\is_array($root) || (\array_is_list($root) && $root !== [])) {
            throw new InvalidRequestException('the body must be a JSON object');
        }
        return $root;
    }

    /**
     * @param array<mixed> $root
     */
    private static function node(array $root): int
    {
        $node = $root['node'] ?? null;
        if (!\is_int($node) || $node < 0 || $node > self::MAX_NODE) {
            throw new InvalidRequestException('"node" must be an integer in 0..' . self::MAX_NODE);
        }
        return $node;
    }

    private static function event(mixed $raw, int $node, int $i): ?Event
    {
        $at = "event {$i}";
        if (!\is_array($raw) || \array_is_list($raw)) {
            throw new InvalidRequestException("{$at}: must be an object");
        }
        $type = $raw['type'] ?? null;
        if (!\is_string($type)) {
            throw new InvalidRequestException("{$at}: \"type\" is missing");
        }
        $fd = $raw['fd'] ?? null;
        if (!\is_int($fd) || $fd < 1 || $fd > self::MAX_FD || ($fd & self::SEQUENCE_MASK) === 0) {
            throw new InvalidRequestException("{$at}: \"fd\" must be a valid fd (an integer in 1..2^53-1 with a non-zero sequence part)");
        }
        $seq = self::int($raw, 'seq', $at, 1);
        $time = self::int($raw, 'time', $at, 0);
        $at = \preg_match('/^[a-z_]{1,32}$/D', $type) === 1 ? "{$at} ({$type}, fd {$fd})" : "{$at} (fd {$fd})";

        switch ($type) {
            case Event::OPEN:
                $user = null;
                if (\array_key_exists('user', $raw) && $raw['user'] !== null) {
                    $user = self::string($raw, 'user', $at, true);
                }
                return new Event(
                    Event::OPEN,
                    $node,
                    $fd,
                    $seq,
                    $time,
                    path: self::string($raw, 'path', $at, true),
                    query: self::string($raw, 'query', $at),
                    headers: self::headers($raw, $at),
                    remoteAddr: self::string($raw, 'remote_addr', $at, true),
                    subprotocol: self::string($raw, 'subprotocol', $at),
                    user: $user,
                    groups: self::strings($raw, 'groups', $at),
                );

            case Event::MESSAGE:
                $opcode = $raw['opcode'] ?? null;
                if ($opcode !== Event::OPCODE_TEXT && $opcode !== Event::OPCODE_BINARY) {
                    throw new InvalidRequestException("{$at}: \"opcode\" must be 1 (text) or 2 (binary)");
                }
                $data = self::string($raw, 'data', $at);
                $encoding = $raw['encoding'] ?? null;
                if ($encoding === 'base64') {
                    $decoded = \base64_decode($data, true);
                    if ($decoded === false || \base64_encode($decoded) !== $data) {
                        throw new InvalidRequestException("{$at}: \"data\" is not valid base64");
                    }
                    $data = $decoded;
                } elseif ($encoding !== null && $encoding !== '') {
                    throw new InvalidRequestException("{$at}: unknown \"encoding\"; only base64 is defined");
                } elseif ($opcode === Event::OPCODE_BINARY) {
                    throw new InvalidRequestException("{$at}: binary data must be base64 with \"encoding\": \"base64\"");
                }
                return new Event(Event::MESSAGE, $node, $fd, $seq, $time, path: self::optionalPath($raw, $at), opcode: $opcode, data: $data);

            case Event::CLOSE:
                $code = self::int($raw, 'code', $at, 1000);
                if ($code > 4999) {
                    throw new InvalidRequestException("{$at}: \"code\" must be a close code in 1000..4999");
                }
                $by = $raw['by'] ?? null;
                if ($by !== 'client' && $by !== 'server') {
                    throw new InvalidRequestException("{$at}: \"by\" must be client or server");
                }
                return new Event(Event::CLOSE, $node, $fd, $seq, $time, path: self::optionalPath($raw, $at), code: $code, reason: self::string($raw, 'reason', $at), by: $by);

            default:
                if (\preg_match('/^[a-z_]{1,32}$/D', $type) === 1) {
                    return null; // well-formed but unknown: a newer bridge's event
                }
                throw new InvalidRequestException("{$at}: malformed event type");
        }
    }

    /**
     * @param array<mixed> $raw
     */
    private static function int(array $raw, string $key, string $at, int $min): int
    {
        $v = $raw[$key] ?? null;
        if (!\is_int($v) || $v < $min) {
            throw new InvalidRequestException("{$at}: \"{$key}\" must be an integer of at least {$min}");
        }
        return $v;
    }

    /**
     * A string field; an optional one (empty strings may be left out) is ''
     * when absent.
     *
     * @param array<mixed> $raw
     */
    private static function string(array $raw, string $key, string $at, bool $required = false): string
    {
        if (!\array_key_exists($key, $raw) && !$required) {
            return '';
        }
        $v = $raw[$key] ?? null;
        if (!\is_string($v) || ($required && $v === '')) {
            throw new InvalidRequestException("{$at}: \"{$key}\" must be a" . ($required ? ' non-empty' : '') . ' string');
        }
        return $v;
    }

    /**
     * The "path" of a message or close event: the connection's upgrade
     * path, or '' when the bridge left it out (an older bridge, or the
     * close of a lost node's fd).
     *
     * @param array<mixed> $raw
     */
    private static function optionalPath(array $raw, string $at): string
    {
        $path = self::string($raw, 'path', $at);
        if ($path !== '' && $path[0] !== '/') {
            throw new InvalidRequestException("{$at}: \"path\" must start with /");
        }
        return $path;
    }

    /**
     * @param array<mixed> $raw
     * @return list<string>
     */
    private static function strings(array $raw, string $key, string $at): array
    {
        $v = $raw[$key] ?? [];
        if (!\is_array($v) || !\array_is_list($v)) {
            throw new InvalidRequestException("{$at}: \"{$key}\" must be a list of strings");
        }
        foreach ($v as $s) {
            if (!\is_string($s)) {
                throw new InvalidRequestException("{$at}: \"{$key}\" must be a list of strings");
            }
        }
        return $v;
    }

    /**
     * @param array<mixed> $raw
     * @return array<string, list<string>>
     */
    private static function headers(array $raw, string $at): array
    {
        $v = $raw['headers'] ?? [];
        if (!\is_array($v) || (\array_is_list($v) && $v !== [])) {
            throw new InvalidRequestException("{$at}: \"headers\" must be an object of lists of strings");
        }
        $out = [];
        foreach ($v as $name => $values) {
            $name = (string) $name;
            if (\preg_match('/^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$/D', $name) !== 1) {
                throw new InvalidRequestException("{$at}: invalid header name");
            }
            $out[$name] = self::strings($v, $name, "{$at}: header {$name}");
        }
        return $out;
    }
}
