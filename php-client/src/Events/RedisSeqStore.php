<?php

declare(strict_types=1);

namespace WsBridge\Events;

use WsBridge\Redis\RedisClient;
use WsBridge\Redis\RedisClients;

/**
 * SeqStore in Redis, shared by every worker and server that receives the
 * bridge's events: exact de-duplication across processes, and a redelivered
 * batch is held back (BUSY) while another process still runs an event of
 * the same fd. One hash per node and fd ("{prefix}:seq:{node}:{fd}": open
 * time, last seq done, busy until in ms of Redis's clock), updated by Lua
 * scripts, so a claim is atomic; it expires $ttl seconds after the last
 * event.
 */
final class RedisSeqStore implements SeqStore
{
    private const CLAIM = <<<'LUA'
        local h = redis.call('HMGET', KEYS[1], 't', 'done', 'busy')
        local t, done, busy = h[1] or '', tonumber(h[2]) or 0, tonumber(h[3]) or 0
        if ARGV[2] == '1' and t ~= ARGV[3] then t = ARGV[3]; done = 0; busy = 0 end
        if tonumber(ARGV[1]) <= done then return 1 end
        local now = redis.call('TIME')
        local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
        if busy > ms then return 2 end
        redis.call('HSET', KEYS[1], 't', t, 'done', done, 'busy', ms + tonumber(ARGV[4]))
        redis.call('EXPIRE', KEYS[1], ARGV[5])
        return 0
        LUA;

    private const COMPLETE = <<<'LUA'
        local done = tonumber(redis.call('HGET', KEYS[1], 'done')) or 0
        if tonumber(ARGV[1]) > done then done = tonumber(ARGV[1]) end
        redis.call('HSET', KEYS[1], 'done', done, 'busy', 0)
        redis.call('EXPIRE', KEYS[1], ARGV[2])
        return done
        LUA;

    private readonly RedisClient $redis;

    /**
     * @param mixed $redis a RedisClient, \Redis, a predis client or a redis:// URL (RedisClients::from)
     */
    public function __construct(mixed $redis, private readonly string $prefix = 'wsbridge', private readonly int $ttl = 86400)
    {
        $this->redis = RedisClients::from($redis);
    }

    public function claim(Event $event, float $lease): int
    {
        return (int) $this->redis->command(
            'EVAL',
            self::CLAIM,
            '1',
            $this->key($event),
            (string) $event->seq,
            $event->type === Event::OPEN ? '1' : '0',
            (string) $event->time,
            (string) (int) \ceil($lease * 1000),
            (string) $this->ttl,
        );
    }

    public function complete(Event $event): void
    {
        $this->redis->command('EVAL', self::COMPLETE, '1', $this->key($event), (string) $event->seq, (string) $this->ttl);
    }

    private function key(Event $event): string
    {
        return "{$this->prefix}:seq:{$event->node}:{$event->fd}";
    }
}
