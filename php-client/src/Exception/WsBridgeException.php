<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * Base of every exception the wsbridge client throws.
 */
class WsBridgeException extends \RuntimeException
{
}
