<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use WsBridge\Events\EventHandler;
use WsBridge\Events\MemorySeqStore;
use WsBridge\Events\SeqStore;
use WsBridge\Events\Server;
use WsBridge\Exception\ConfigurationException;
use WsBridge\Sender;

/**
 * The EventHandler behind EventsController, from wsbridge.events:
 * controller (a class the container makes), secret, max_body_size,
 * tolerance, authorizer (a callable, or the class of an invokable the
 * container makes), deduplicate (true: MemorySeqStore; or the class of a
 * SeqStore). Exceptions go to Hyperf's StdoutLoggerInterface.
 */
final class EventHandlerFactory
{
    public const LOGGER = 'Hyperf\Contract\StdoutLoggerInterface';

    public function __invoke(ContainerInterface $container): EventHandler
    {
        $events = Config::section($container, 'events');
        $class = $events['controller'] ?? null;
        if (!\is_string($class) || $class === '') {
            throw new ConfigurationException('wsbridge.events.controller is not set: name the WebSocket controller that receives the events (config/autoload/wsbridge.php)');
        }
        $handler = new EventHandler($container->get($class), new Server($container->get(Sender::class)));
        $handler = $handler->withSecret($events['secret'] ?? null);
        if (isset($events['max_body_size'])) {
            $handler = $handler->withMaxBodySize((int) $events['max_body_size']);
        }
        if (isset($events['tolerance'])) {
            $handler = $handler->withTolerance((int) $events['tolerance']);
        }
        $authorizer = $events['authorizer'] ?? null;
        if (\is_string($authorizer) && $authorizer !== '' && \class_exists($authorizer)) {
            $authorizer = $container->get($authorizer);
        }
        if ($authorizer !== null && $authorizer !== '') {
            if (!\is_callable($authorizer)) {
                throw new ConfigurationException('wsbridge.events.authorizer must be a callable or the class of an invokable');
            }
            $handler = $handler->withAuthorizer($authorizer);
        }
        $dedupe = $events['deduplicate'] ?? true;
        if ($dedupe === true) {
            $handler = $handler->withSeqStore(new MemorySeqStore());
        } elseif (\is_string($dedupe) && $dedupe !== '') {
            $store = $container->get($dedupe);
            if (!$store instanceof SeqStore) {
                throw new ConfigurationException('wsbridge.events.deduplicate names a class that is not a ' . SeqStore::class);
            }
            $handler = $handler->withSeqStore($store);
        }
        if ($container->has(self::LOGGER)) {
            $handler = $handler->withLogger($container->get(self::LOGGER));
        }
        return $handler;
    }
}
