<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use WsBridge\Exception\ConfigurationException;

/**
 * MiddlewareAuthorizer over wsbridge.events.handshake_middlewares, or, when
 * that is not set, the application's own `middlewares.ws` (the middlewares
 * Hyperf ran on the `ws` server's handshakes).
 */
final class MiddlewareAuthorizerFactory
{
    public function __invoke(ContainerInterface $container): MiddlewareAuthorizer
    {
        $events = Config::section($container, 'events');
        $list = $events['handshake_middlewares'] ?? null;
        if ($list === null && $container->has(Config::CONFIG_INTERFACE)) {
            $list = $container->get(Config::CONFIG_INTERFACE)->get('middlewares.ws', []);
        }
        if (!\is_array($list)) {
            throw new ConfigurationException('wsbridge.events.handshake_middlewares must be a list of middleware classes');
        }
        return new MiddlewareAuthorizer($container, \array_values($list));
    }
}
