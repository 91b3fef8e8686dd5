<?php

declare(strict_types=1);

namespace WsBridge\Tests\Support;

/**
 * A gorilla/websocket client in its own process (tests/wsclient), which
 * reports what it receives as JSON lines.
 */
final class WsClient
{
    /** @var resource */
    private $process;
    /** @var array<int, resource> */
    private array $pipes;
    private string $buffer = '';

    public function __construct(string $url)
    {
        $process = \proc_open([Build::wsclient(), '-url', $url], [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        if ($process === false) {
            throw new \RuntimeException('cannot start ' . Build::wsclient());
        }
        $this->process = $process;
        $this->pipes = $pipes;
        $open = $this->next();
        if ($open['event'] !== 'open') {
            throw new \RuntimeException('wsclient did not connect: ' . \json_encode($open));
        }
    }

    /**
     * The next event: ['event' => 'message', 'opcode' => int, 'data' => string]
     * (data decoded), or 'close' with 'code', or 'error'.
     *
     * @return array<string, mixed>
     */
    public function next(float $timeout = 10.0): array
    {
        $deadline = \microtime(true) + $timeout;
        while (($nl = \strpos($this->buffer, "\n")) === false) {
            $left = $deadline - \microtime(true);
            if ($left <= 0) {
                throw new \RuntimeException("no event from wsclient within {$timeout}s");
            }
            $r = [$this->pipes[1]];
            $w = $e = null;
            if (\stream_select($r, $w, $e, (int) $left, (int) (($left - (int) $left) * 1e6)) === 1) {
                $chunk = \fread($this->pipes[1], 65536);
                if ($chunk === '' || $chunk === false) {
                    throw new \RuntimeException('wsclient exited');
                }
                $this->buffer .= $chunk;
            }
        }
        $line = \substr($this->buffer, 0, $nl);
        $this->buffer = (string) \substr($this->buffer, $nl + 1);
        $ev = \json_decode($line, true, 512, \JSON_THROW_ON_ERROR);
        if (isset($ev['data'])) {
            $ev['data'] = \base64_decode($ev['data'], true);
        } elseif (($ev['event'] ?? '') === 'message') {
            $ev['data'] = '';
        }
        return $ev;
    }

    public function close(): void
    {
        if (isset($this->pipes[0])) {
            \fclose($this->pipes[0]);
            unset($this->pipes[0]);
        }
    }

    public function __destruct()
    {
        $this->close();
        $deadline = \microtime(true) + 5;
        while (\proc_get_status($this->process)['running'] && \microtime(true) < $deadline) {
            \usleep(5000);
        }
        if (\proc_get_status($this->process)['running']) {
            \proc_terminate($this->process, 9);
        }
        \fclose($this->pipes[1]);
        \proc_close($this->process);
    }
}
