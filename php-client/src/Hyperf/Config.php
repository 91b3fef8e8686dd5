<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use WsBridge\Exception\InvalidArgumentException;

/**
 * Reads the "wsbridge" key of Hyperf's configuration
 * (config/autoload/wsbridge.php, published from publish/wsbridge.php).
 *
 * @internal
 */
final class Config
{
    /** Hyperf\Contract\ConfigInterface, named as a string: Hyperf may be absent. */
    public const CONFIG_INTERFACE = 'Hyperf\Contract\ConfigInterface';

    private function __construct()
    {
    }

    /**
     * @return array<string, mixed> wsbridge.$section, [] when not set
     */
    public static function section(ContainerInterface $container, string $section): array
    {
        $all = $container->has(self::CONFIG_INTERFACE) ? $container->get(self::CONFIG_INTERFACE)->get('wsbridge', []) : [];
        $value = \is_array($all) ? ($all[$section] ?? []) : [];
        if (!\is_array($value)) {
            throw new InvalidArgumentException("wsbridge.{$section} must be an array");
        }
        return $value;
    }

    /**
     * What the Redis-backed stores connect with (RedisClients::from):
     * wsbridge.redis.client, the class of a client the container makes
     * (\Redis, a predis client), else wsbridge.redis.url.
     */
    public static function redis(ContainerInterface $container): mixed
    {
        $redis = self::section($container, 'redis');
        if (\is_string($redis['client'] ?? null) && $redis['client'] !== '') {
            return $container->get($redis['client']);
        }
        return (string) ($redis['url'] ?? 'redis://127.0.0.1:6379');
    }
}
