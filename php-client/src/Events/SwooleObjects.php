<?php

declare(strict_types=1);

namespace WsBridge\Events;

use Swoole\Http\Request;
use Swoole\WebSocket\Frame;

/**
 * Builds the objects a Hyperf WebSocket controller receives, with the
 * properties Swoole fills in: real Swoole\Http\Request and
 * Swoole\WebSocket\Frame objects when the extension is loaded, and
 * otherwise the package's stand-ins of the same names (polyfill/swoole.php).
 *
 * @internal
 */
final class SwooleObjects
{
    private function __construct()
    {
    }

    /**
     * The handshake request of an open event (fd > 0) or of an auth request
     * (fd 0: there is no connection yet).
     *
     * - header: lowercase names; a header sent several times is joined with
     *   ", " (Cookie with "; "), as HTTP combines them;
     * - server: Swoole's keys (request_method, request_uri, path_info,
     *   query_string when there is one, server_protocol, server_port,
     *   remote_addr, remote_port, request_time, request_time_float,
     *   master_time);
     * - get: parse_str() of the raw query; cookie: the Cookie header's pairs
     *   with their values url-decoded. Like Swoole, both are null when
     *   there is nothing to put in them.
     *
     * @param array<string, list<string>> $headers
     */
    public static function request(int $fd, string $path, string $query, array $headers, string $remoteAddr, int $timeMs): Request
    {
        $header = [];
        foreach ($headers as $name => $values) {
            $name = \strtolower((string) $name);
            $joined = \implode($name === 'cookie' ? '; ' : ', ', $values);
            $header[$name] = isset($header[$name]) ? $header[$name] . ($name === 'cookie' ? '; ' : ', ') . $joined : $joined;
        }
        [$remoteHost, $remotePort] = self::splitHostPort($remoteAddr);
        $server = [
            'request_method' => 'GET',
            'request_uri' => $path,
            'path_info' => $path,
            'request_time' => \intdiv($timeMs, 1000),
            'request_time_float' => $timeMs / 1000,
            'server_protocol' => 'HTTP/1.1',
            'server_port' => self::serverPort($header['host'] ?? ''),
            'remote_port' => $remotePort,
            'remote_addr' => $remoteHost,
            'master_time' => \intdiv($timeMs, 1000),
        ];
        if ($query !== '') {
            $server['query_string'] = $query;
        }

        $request = new Request();
        $request->fd = $fd;
        $request->header = $header;
        $request->server = $server;
        $get = null;
        if ($query !== '') {
            \parse_str($query, $get);
        }
        $request->get = $get;
        $request->cookie = isset($header['cookie']) ? self::cookies($header['cookie']) : null;
        return $request;
    }

    /**
     * A whole message: finish is true (the bridge delivers messages, not
     * fragments), data holds the bytes (binary base64-decoded).
     */
    public static function frame(int $fd, string $data, int $opcode): Frame
    {
        $frame = new Frame();
        $frame->fd = $fd;
        $frame->data = $data;
        $frame->opcode = $opcode;
        $frame->flags = 1; // SWOOLE_WEBSOCKET_FLAG_FIN
        $frame->finish = true;
        return $frame;
    }

    /**
     * @return array{string, int}
     */
    private static function splitHostPort(string $addr): array
    {
        if (\preg_match('/^\[([^\]]*)\]:(\d+)$/D', $addr, $m) === 1 || \preg_match('/^([^:]*):(\d+)$/D', $addr, $m) === 1) {
            return [$m[1], (int) $m[2]];
        }
        return [$addr, 0];
    }

    /**
     * The port the client connected to, as far as its Host header tells
     * (the bridge does not send its local address): 80 when none is named.
     */
    private static function serverPort(string $host): int
    {
        if (\preg_match('/:(\d{1,5})$/D', $host, $m) === 1) {
            return (int) $m[1];
        }
        return 80;
    }

    /**
     * @return array<string, string>|null
     */
    private static function cookies(string $header): ?array
    {
        $out = [];
        foreach (\explode(';', $header) as $pair) {
            $eq = \strpos($pair, '=');
            if ($eq === false) {
                continue;
            }
            $name = \trim(\substr($pair, 0, $eq));
            if ($name === '') {
                continue;
            }
            $out[$name] = \urldecode(\trim(\substr($pair, $eq + 1)));
        }
        return $out === [] ? null : $out;
    }
}
