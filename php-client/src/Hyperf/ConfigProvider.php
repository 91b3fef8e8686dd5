<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use WsBridge\Context\ConnectionContext;
use WsBridge\Events\EventHandler;
use WsBridge\Sender;

/**
 * Hyperf's entry to wsbridge (found through composer.json
 * "extra.hyperf.config"): binds Hyperf\WebSocketServer\Sender to the
 * wsbridge one, WsBridge\Sender and the EventHandler behind
 * EventsController to factories reading config/autoload/wsbridge.php, and
 * publishes that file (php bin/hyperf.php vendor:publish wsbridge/php-client).
 *
 * It names Hyperf's classes by strings and HyperfSender only through its
 * factory, so it loads, and can be invoked, without Hyperf.
 */
class ConfigProvider
{
    public function __invoke(): array
    {
        return [
            'dependencies' => [
                HyperfSenderFactory::HYPERF_SENDER => HyperfSenderFactory::class,
                Sender::class => SenderFactory::class,
                EventHandler::class => EventHandlerFactory::class,
                ConnectionContext::class => ConnectionContextFactory::class,
                MiddlewareAuthorizer::class => MiddlewareAuthorizerFactory::class,
            ],
            'publish' => [
                [
                    'id' => 'config',
                    'description' => 'The config for wsbridge: the bridge RPC address, timeouts, the events secret and controller.',
                    'source' => \dirname(__DIR__, 2) . '/publish/wsbridge.php',
                    'destination' => (\defined('BASE_PATH') ? \constant('BASE_PATH') : \getcwd()) . '/config/autoload/wsbridge.php',
                ],
            ],
        ];
    }
}
