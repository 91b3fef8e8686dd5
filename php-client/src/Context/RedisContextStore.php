<?php

declare(strict_types=1);

namespace WsBridge\Context;

use WsBridge\Exception\InvalidArgumentException;
use WsBridge\Redis\RedisClient;
use WsBridge\Redis\RedisClients;

/**
 * Connection context in Redis, shared by every worker and server that
 * receives the bridge's events: one hash per fd ("{prefix}:ctx:{fd}"),
 * values JSON-encoded, released after the close event and expiring after
 * $ttl seconds without a write (a safety net for a close event that never
 * came). fds are never reused, so keys of different connections never meet.
 */
final class RedisContextStore implements ContextStore
{
    private readonly RedisClient $redis;

    /**
     * @param mixed $redis a RedisClient, \Redis, a predis client or a redis:// URL (RedisClients::from)
     */
    public function __construct(mixed $redis, private readonly string $prefix = 'wsbridge', private readonly int $ttl = 86400)
    {
        $this->redis = RedisClients::from($redis);
        if ($ttl < 1) {
            throw new InvalidArgumentException('the context TTL must be at least 1 second');
        }
    }

    public function get(int $fd, string $key): mixed
    {
        $raw = $this->redis->command('HGET', $this->key($fd), $key);
        return \is_string($raw) ? \json_decode($raw, true) : null;
    }

    public function has(int $fd, string $key): bool
    {
        $raw = $this->redis->command('HGET', $this->key($fd), $key);
        return \is_string($raw) && $raw !== 'null';
    }

    public function set(int $fd, string $key, mixed $value): void
    {
        $json = \json_encode($value, \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_PRESERVE_ZERO_FRACTION);
        if ($json === false) {
            throw new InvalidArgumentException("the context value of \"{$key}\" cannot be stored as JSON: " . \json_last_error_msg());
        }
        $this->redis->command('HSET', $this->key($fd), $key, $json);
        $this->redis->command('EXPIRE', $this->key($fd), (string) $this->ttl);
    }

    public function delete(int $fd, string $key): void
    {
        $this->redis->command('HDEL', $this->key($fd), $key);
    }

    public function all(int $fd): array
    {
        $flat = (array) $this->redis->command('HGETALL', $this->key($fd));
        $out = [];
        for ($i = 0; $i + 1 < \count($flat); $i += 2) {
            $out[(string) $flat[$i]] = \json_decode((string) $flat[$i + 1], true);
        }
        return $out;
    }

    public function release(int $fd): void
    {
        $this->redis->command('DEL', $this->key($fd));
    }

    private function key(int $fd): string
    {
        return "{$this->prefix}:ctx:{$fd}";
    }
}
