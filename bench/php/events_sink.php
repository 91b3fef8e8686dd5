<?php

declare(strict_types=1);

// The php -S receiver of bench/eventload: the real events handler with a
// controller that only measures. Each message's text starts with the unix
// time in nanoseconds when the client sent it; every batch appends
// "<events> <sum of latencies in µs> <max µs>" to EVENTLOAD_OUT.

require __DIR__ . '/../../php-client/vendor/autoload.php';

use WsBridge\Events\Endpoint;
use WsBridge\Events\EventHandler;
use WsBridge\Sender;

final class MeasuringController
{
    public int $events = 0;
    public float $sum = 0;
    public float $max = 0;

    public function onOpen($server, $request): void
    {
        $this->events++;
    }

    public function onMessage($server, $frame): void
    {
        $this->events++;
        $sent = (int) \strtok($frame->data, ' ');
        $lat = (\microtime(true) * 1e6) - ($sent / 1e3);
        $this->sum += $lat;
        $this->max = \max($this->max, $lat);
    }

    public function onClose($server, int $fd, int $reactorId): void
    {
        $this->events++;
    }
}

$c = new MeasuringController();
$handler = EventHandler::create($c, Sender::create('tcp://127.0.0.1:1'), ['secret' => \getenv('WSBRIDGE_EVENTS_SECRET')])
    ->withMaxBodySize(64 << 20);
$res = Endpoint::serve($handler);
if ($res->status === 204) {
    \file_put_contents((string) \getenv('EVENTLOAD_OUT'), \sprintf("%d %.0f %.0f\n", $c->events, $c->sum, $c->max), \FILE_APPEND | \LOCK_EX);
}
