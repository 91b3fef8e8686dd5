<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use WsBridge\Context\ConnectionContext;
use WsBridge\Events\AdminConnections;
use WsBridge\Events\EventHandler;
use WsBridge\Events\MemorySeqStore;
use WsBridge\Events\RedisSeqStore;
use WsBridge\Events\SeqStore;
use WsBridge\Events\Server;
use WsBridge\Exception\ConfigurationException;
use WsBridge\Sender;

/**
 * The EventHandler behind EventsController, from wsbridge.events:
 * controller (a class the container makes), secret, max_body_size,
 * tolerance, authorizer (a callable, or the class of an invokable the
 * container makes), controllers (path => controller class, as
 * Router::addServer routes), deduplicate (true or 'memory': MemorySeqStore;
 * 'redis': RedisSeqStore; or the class of a SeqStore), lease and
 * server_style ('async', 'coroutine', or 'auto': from Hyperf's server.type),
 * handshake_request (true: the handshake is Hyperf's current request in
 * onOpen, made by Hyperf's Request; false: off; or the class of an invokable
 * that makes it from the Swoole\Http\Request); the
 * ConnectionContext the container makes (wsbridge.context); $server's
 * connections listed through wsbridge.admin (url, token). Exceptions go to
 * Hyperf's StdoutLoggerInterface.
 */
final class EventHandlerFactory
{
    public const LOGGER = 'Hyperf\Contract\StdoutLoggerInterface';
    public const COROUTINE_SERVER = 'Hyperf\Server\CoroutineServer';

    public function __invoke(ContainerInterface $container): EventHandler
    {
        $events = Config::section($container, 'events');
        $class = $events['controller'] ?? null;
        if (!\is_string($class) || $class === '') {
            throw new ConfigurationException('wsbridge.events.controller is not set: name the WebSocket controller that receives the events (config/autoload/wsbridge.php)');
        }
        $admin = Config::section($container, 'admin');
        $lister = null;
        if (($admin['url'] ?? '') !== '' && ($admin['token'] ?? '') !== '') {
            $lister = (new AdminConnections((string) $admin['url'], (string) $admin['token']))->lister();
        }
        $handler = new EventHandler($container->get($class), new Server($container->get(Sender::class), $lister));
        $routes = $events['controllers'] ?? [];
        if (!\is_array($routes)) {
            throw new ConfigurationException('wsbridge.events.controllers must map paths to controller classes');
        }
        foreach ($routes as $path => $routeClass) {
            $handler = $handler->withRoute((string) $path, $container->get((string) $routeClass));
        }
        $handler = $handler->withServerStyle(self::serverStyle($container, $events['server_style'] ?? null));
        $handler = $handler->withContext($container->get(ConnectionContext::class));
        $handshake = $events['handshake_request'] ?? true;
        if ($handshake === false) {
            $handler = $handler->withHandshakeRequest(false);
        } elseif (\is_string($handshake) && $handshake !== '') {
            $factory = $container->get($handshake);
            if (!\is_callable($factory)) {
                throw new ConfigurationException('wsbridge.events.handshake_request names a class that is not invokable');
            }
            $handler = $handler->withHandshakeRequest($factory);
        } elseif ($handshake !== true && $handshake !== null) {
            throw new ConfigurationException('wsbridge.events.handshake_request must be true, false or the class of an invokable');
        }
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
        $lease = (float) ($events['lease'] ?? 60.0);
        if ($dedupe === true || $dedupe === 'memory') {
            $handler = $handler->withSeqStore(new MemorySeqStore(), $lease);
        } elseif ($dedupe === 'redis') {
            $redis = Config::section($container, 'redis');
            $handler = $handler->withSeqStore(new RedisSeqStore(Config::redis($container), (string) ($redis['prefix'] ?? 'wsbridge')), $lease);
        } elseif (\is_string($dedupe) && $dedupe !== '') {
            $store = $container->get($dedupe);
            if (!$store instanceof SeqStore) {
                throw new ConfigurationException('wsbridge.events.deduplicate names a class that is not a ' . SeqStore::class);
            }
            $handler = $handler->withSeqStore($store, $lease);
        }
        if ($container->has(self::LOGGER)) {
            $handler = $handler->withLogger($container->get(self::LOGGER));
        }
        return $handler;
    }

    /**
     * wsbridge.events.server_style, or, when it is null or 'auto', the
     * style of Hyperf's own server.type (config/autoload/server.php):
     * Hyperf\Server\CoroutineServer is 'coroutine', anything else 'async'.
     */
    public static function serverStyle(ContainerInterface $container, mixed $configured): string
    {
        if ($configured !== null && $configured !== 'auto') {
            if ($configured !== EventHandler::STYLE_ASYNC && $configured !== EventHandler::STYLE_COROUTINE) {
                throw new ConfigurationException('wsbridge.events.server_style must be async, coroutine or auto');
            }
            return $configured;
        }
        $type = $container->has(Config::CONFIG_INTERFACE) ? $container->get(Config::CONFIG_INTERFACE)->get('server.type') : null;
        return \is_string($type) && \ltrim($type, '\\') === self::COROUTINE_SERVER ? EventHandler::STYLE_COROUTINE : EventHandler::STYLE_ASYNC;
    }
}
