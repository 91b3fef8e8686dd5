<?php

declare(strict_types=1);

namespace WsBridge\Redis;

use WsBridge\Exception\InvalidArgumentException;

/**
 * Wraps what an application has for Redis into a RedisClient: an object of
 * the redis extension (\Redis, \RedisCluster), a predis client, a
 * RedisClient, or a URL (redis://[:password@]host:port/db, served by the
 * built-in RespClient).
 */
final class RedisClients
{
    private function __construct()
    {
    }

    public static function from(mixed $redis): RedisClient
    {
        if ($redis instanceof RedisClient) {
            return $redis;
        }
        if (\is_string($redis)) {
            return RespClient::fromUrl($redis);
        }
        if (\is_object($redis) && (\is_a($redis, 'Redis') || \is_a($redis, 'RedisCluster') || \is_callable([$redis, 'rawCommand']))) {
            return new class ($redis) implements RedisClient {
                public function __construct(private readonly object $redis)
                {
                }

                public function command(string ...$args): mixed
                {
                    try {
                        return $this->redis->rawCommand(...$args);
                    } catch (\Throwable $e) {
                        throw new RedisException('Redis: ' . $e->getMessage(), 0, $e);
                    }
                }
            };
        }
        if (\is_object($redis) && \is_callable([$redis, 'executeRaw'])) { // Predis\ClientInterface
            return new class ($redis) implements RedisClient {
                public function __construct(private readonly object $redis)
                {
                }

                public function command(string ...$args): mixed
                {
                    try {
                        $reply = $this->redis->executeRaw($args, $error);
                    } catch (\Throwable $e) {
                        throw new RedisException('Redis: ' . $e->getMessage(), 0, $e);
                    }
                    if ($error) {
                        throw new RedisException('Redis answered: ' . (string) $reply, 1);
                    }
                    return $reply;
                }
            };
        }
        throw new InvalidArgumentException(
            'want a Redis client: \Redis (ext-redis), a predis client, a ' . RedisClient::class . ' or a redis:// URL; got '
            . \get_debug_type($redis)
        );
    }
}
