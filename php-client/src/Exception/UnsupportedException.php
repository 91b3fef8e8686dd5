<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * A call the bridge cannot carry out: a Swoole server method that has no
 * meaning when wsbridge holds the connections (task, sendfile, start, ...),
 * or an API the configured bridge does not offer.
 */
class UnsupportedException extends WsBridgeException
{
}
