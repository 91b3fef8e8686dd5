<?php

declare(strict_types=1);

namespace WsBridge\Redis;

use WsBridge\Exception\WsBridgeException;

/**
 * Redis, behind a wsbridge store (connection context, seq store), could not
 * be reached or answered an error.
 */
class RedisException extends WsBridgeException
{
}
