<?php

declare(strict_types=1);

namespace WsBridge\Events;

use WsBridge\Exception\ConnectionException;
use WsBridge\Exception\ProtocolException;

/**
 * Lists the bridge's open fds through its admin API (GET /v1/connections
 * with the admin token), a page at a time: the lister behind
 * $server->connections.
 *
 *   new Server($sender, (new AdminConnections('http://127.0.0.1:9503', $token))->lister())
 */
final class AdminConnections
{
    public function __construct(
        private readonly string $url,
        private readonly string $token,
        private readonly float $timeout = 5.0,
    ) {
    }

    /**
     * @return \Closure(int, int): array{list<int>, ?int}
     */
    public function lister(): \Closure
    {
        return fn (int $after, int $limit): array => $this->page($after, $limit);
    }

    /**
     * The open fds after $after, at most $limit, and the after= of the next
     * page (null on the last).
     *
     * @return array{list<int>, ?int}
     * @throws ConnectionException|ProtocolException
     */
    public function page(int $after, int $limit): array
    {
        $url = \rtrim($this->url, '/') . '/v1/connections?' . \http_build_query(['after' => $after, 'limit' => $limit]);
        $context = \stream_context_create(['http' => [
            'method' => 'GET',
            'header' => "Authorization: Bearer {$this->token}\r\nAccept: application/json\r\n",
            'timeout' => $this->timeout,
            'ignore_errors' => true,
        ]]);
        $body = @\file_get_contents($url, false, $context);
        $status = isset($http_response_header[0]) && \preg_match('#^HTTP/\S+ (\d{3})#', $http_response_header[0], $m) === 1
            ? (int) $m[1] : 0;
        if ($body === false || $status === 0) {
            throw new ConnectionException("cannot reach the bridge's admin API at {$this->url}", $this->url);
        }
        if ($status !== 200) {
            throw new ProtocolException("the bridge's admin API answered {$status} to GET /v1/connections: " . \substr($body, 0, 200));
        }
        $list = \json_decode($body, true);
        if (!\is_array($list) || !\is_array($list['connections'] ?? null)) {
            throw new ProtocolException("the bridge's admin API answered GET /v1/connections with no connection list");
        }
        $fds = \array_map(static fn (array $c): int => (int) $c['fd'], $list['connections']);
        $next = $list['next_after'] ?? null;
        return [$fds, $next === null ? null : (int) $next];
    }
}
