<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use WsBridge\Sender;

/**
 * WsBridge\Sender from wsbridge.rpc, safe to share between coroutines:
 * each call borrows a connection from a bounded pool (CoroutineRPC;
 * wsbridge.rpc.pool: max_active, max_idle, wait_timeout).
 */
final class SenderFactory
{
    public function __invoke(ContainerInterface $container): Sender
    {
        $rpc = Config::section($container, 'rpc');
        $options = [];
        $keys = ['connect_timeout' => 'float', 'read_timeout' => 'float', 'retries' => 'int', 'retry_delay' => 'float',
            'max_frame_size' => 'int', 'max_request_size' => 'int'];
        foreach ($keys as $key => $type) {
            if (isset($rpc[$key])) {
                $options[$key] = $type === 'int' ? (int) $rpc[$key] : (float) $rpc[$key];
            }
        }
        $address = (string) ($rpc['address'] ?? 'tcp://127.0.0.1:6001');
        return new Sender(
            CoroutineRPC::create($address, $options, [
                'max_active' => (int) ($rpc['pool']['max_active'] ?? 32),
                'max_idle' => (int) ($rpc['pool']['max_idle'] ?? $rpc['pool_max_idle'] ?? 16),
                'wait_timeout' => (float) ($rpc['pool']['wait_timeout'] ?? 3.0),
            ]),
            (bool) ($rpc['strict'] ?? false),
        );
    }
}
