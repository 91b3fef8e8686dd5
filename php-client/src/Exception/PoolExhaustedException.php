<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * Every RPC connection of this worker's pool stayed busy for the pool's wait
 * timeout (wsbridge.rpc.pool: max_active, wait_timeout). Nothing was sent.
 */
class PoolExhaustedException extends WsBridgeException
{
}
