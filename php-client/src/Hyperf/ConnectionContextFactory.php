<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use WsBridge\Context\ConnectionContext;
use WsBridge\Context\ContextStore;
use WsBridge\Context\MemoryContextStore;
use WsBridge\Context\RedisContextStore;
use WsBridge\Exception\ConfigurationException;

/**
 * The ConnectionContext from wsbridge.context: store 'memory' (each worker
 * its own, as Hyperf's WebSocketServer\Context), 'redis' (shared by every
 * worker: wsbridge.redis.url, wsbridge.redis.prefix, context.ttl) or the
 * class of a ContextStore the container makes. Inject ConnectionContext in a
 * controller to read what onOpen stored from any worker.
 */
final class ConnectionContextFactory
{
    public function __invoke(ContainerInterface $container): ConnectionContext
    {
        $config = Config::section($container, 'context');
        $store = $config['store'] ?? 'memory';
        if ($store === 'memory') {
            return new ConnectionContext(new MemoryContextStore());
        }
        if ($store === 'redis') {
            $redis = Config::section($container, 'redis');
            return new ConnectionContext(new RedisContextStore(
                Config::redis($container),
                (string) ($redis['prefix'] ?? 'wsbridge'),
                (int) ($config['ttl'] ?? 86400),
            ));
        }
        if (\is_string($store) && \class_exists($store)) {
            $made = $container->get($store);
            if ($made instanceof ContextStore) {
                return new ConnectionContext($made);
            }
        }
        throw new ConfigurationException('wsbridge.context.store must be "memory", "redis" or the class of a ' . ContextStore::class);
    }
}
