<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use WsBridge\Sender;

/**
 * WsBridge\Sender from wsbridge.rpc, safe to share between coroutines:
 * each coroutine gets a connection of its own (CoroutineRPC).
 */
final class SenderFactory
{
    public function __invoke(ContainerInterface $container): Sender
    {
        $rpc = Config::section($container, 'rpc');
        $options = [];
        foreach (['connect_timeout' => 'float', 'read_timeout' => 'float', 'retries' => 'int', 'retry_delay' => 'float', 'max_frame_size' => 'int'] as $key => $type) {
            if (isset($rpc[$key])) {
                $options[$key] = $type === 'int' ? (int) $rpc[$key] : (float) $rpc[$key];
            }
        }
        $address = (string) ($rpc['address'] ?? 'tcp://127.0.0.1:6001');
        return new Sender(
            CoroutineRPC::create($address, $options, (int) ($rpc['pool_max_idle'] ?? 16)),
            (bool) ($rpc['strict'] ?? false),
        );
    }
}
