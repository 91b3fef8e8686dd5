<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use WsBridge\Exception\ConfigurationException;

/**
 * Makes the HyperfSender that stands for Hyperf\WebSocketServer\Sender.
 * HyperfSender extends Hyperf's class, so it is named only here, when the
 * container asks for Hyperf's Sender (which then exists).
 */
final class HyperfSenderFactory
{
    public const HYPERF_SENDER = 'Hyperf\WebSocketServer\Sender';

    public function __invoke(ContainerInterface $container): object
    {
        if (!\class_exists(self::HYPERF_SENDER)) {
            throw new ConfigurationException('Hyperf\WebSocketServer\Sender does not exist: install hyperf/websocket-server to use the wsbridge Sender in its place');
        }
        return new HyperfSender($container);
    }
}
