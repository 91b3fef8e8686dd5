<?php

declare(strict_types=1);

namespace WsBridge\Goridge;

use WsBridge\Exception\ConnectionException;
use WsBridge\Exception\ProtocolException;
use WsBridge\Exception\ServiceException;

/**
 * A goridge RPC client: what Sender needs. RPC is the implementation over
 * one persistent connection; WsBridge\Hyperf\CoroutineRPC gives each
 * coroutine a connection of its own.
 */
interface RPCInterface
{
    /**
     * Calls $method (e.g. "Sender.Push") with $args and returns the decoded
     * JSON reply.
     *
     * @throws ConnectionException the bridge is unreachable (after the retries) or the connection broke mid-call
     * @throws ProtocolException   a malformed reply or one with the wrong sequence number
     * @throws ServiceException    the bridge refused the call
     */
    public function call(string $method, mixed $args): mixed;
}
