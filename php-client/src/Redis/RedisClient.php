<?php

declare(strict_types=1);

namespace WsBridge\Redis;

use WsBridge\Exception\WsBridgeException;

/**
 * The one call the Redis-backed stores make: a raw command. Adapters:
 * RespClient (built in, no extension), PhpRedisClient (the redis
 * extension's \Redis), PredisClient (predis/predis); RedisClients::from()
 * picks one for what it is given.
 */
interface RedisClient
{
    /**
     * Runs one command (e.g. 'HGET', 'key', 'field') and returns Redis's
     * reply: a string, an int, null, or a list of those.
     *
     * @throws WsBridgeException the server is unreachable or answered an error
     */
    public function command(string ...$args): mixed;
}
