<?php

declare(strict_types=1);

namespace WsBridge\Coroutine;

final class Runtimes
{
    private function __construct()
    {
    }

    /**
     * SwooleRuntime when the Swoole extension is loaded, else NoRuntime.
     */
    public static function detect(): Runtime
    {
        return \extension_loaded('swoole') || \extension_loaded('openswoole') ? new SwooleRuntime() : new NoRuntime();
    }
}
