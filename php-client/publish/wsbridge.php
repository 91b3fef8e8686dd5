<?php

declare(strict_types=1);

/*
 * wsbridge: the Go sidecar that holds the WebSocket connections.
 * Published to config/autoload/wsbridge.php by
 *   php bin/hyperf.php vendor:publish wsbridge/php-client
 * Every value can come from the bridge's own WSBRIDGE_* variables.
 */

return [
    // Where PHP calls the bridge (goridge RPC): WSBRIDGE_RPC_ADDR.
    'rpc' => [
        'address' => getenv('WSBRIDGE_RPC_ADDR') ?: 'tcp://127.0.0.1:6001', // or unix:///run/wsbridge/rpc.sock
        'connect_timeout' => 1.0, // seconds
        'read_timeout' => 5.0,    // seconds to wait for a reply
        'retries' => 2,           // reconnect attempts of a call that could not be sent
        'retry_delay' => 0.05,    // seconds, doubling
        'strict' => false,        // true: a push to a closed fd throws NotDeliveredException instead of returning false
        // The bridge's rpc-max-frame-size (WSBRIDGE_RPC_MAX_FRAME_SIZE): a larger push or batch
        // throws ServiceException "too_large" here, before anything is sent.
        'max_request_size' => 32 * 1024 * 1024,
        // RPC connections of each worker, shared by its coroutines (one call at a time each).
        // Keep workers x max_active under the bridge's rpc-max-connections (1024 by default).
        'pool' => [
            'max_active' => 32,   // open at once; a call finding none free waits
            'max_idle' => 16,     // kept open between calls
            'wait_timeout' => 3.0, // seconds a call waits for a free one, then PoolExhaustedException
        ],
    ],

    // What the bridge posts to WSBRIDGE_EVENTS_URL / WSBRIDGE_EVENTS_AUTH_URL,
    // received by WsBridge\Hyperf\EventsController (see config/routes.php).
    'events' => [
        // The WebSocket controller that receives onOpen / onMessage / onClose.
        'controller' => 'App\Controller\WebSocketController',
        // What the controllers get as $server: 'async' (Hyperf's default server: a
        // Swoole\WebSocket\Server, $server->push($fd, $data)), 'coroutine' (as under
        // Hyperf\Server\CoroutineServer: the connection's Swoole\Http\Response,
        // $server->push($data), $server->close()), or 'auto': from server.type.
        'server_style' => 'auto',
        // Inside onOpen, the injected Hyperf\HttpServer\Contract\RequestInterface is the
        // WebSocket handshake (query, headers, cookies, path, remote address), as under
        // Hyperf's own server: true (made by Hyperf\HttpMessage\Server\Request), false
        // (it stays the bridge's events POST), or the class of an invokable that makes the
        // PSR-7 request from the handshake's Swoole\Http\Request.
        'handshake_request' => true,
        // Other handshake paths with their own controller, as your Router::addServer('ws', ...)
        // routes had them (other paths go to 'controller'), e.g. ['/admin' => 'App\Controller\AdminWsController'].
        'controllers' => [],
        // WSBRIDGE_EVENTS_SECRET: with a secret, unsigned requests are refused.
        // A list of secrets is accepted while one is rotated.
        'secret' => getenv('WSBRIDGE_EVENTS_SECRET') ?: '',
        // Largest request body, in bytes (larger: 400). At least the bridge's
        // WSBRIDGE_EVENTS_BATCH_BYTES and 4/3 of WSBRIDGE_MAX_MESSAGE_SIZE; the
        // HTTP server's package_max_length must allow it too.
        'max_body_size' => 8 * 1024 * 1024,
        // Seconds a request's timestamp may be away from this clock.
        'tolerance' => 300,
        // Handshake authorization: a callable, or the class of an invokable made
        // by the container, called with the handshake (Swoole\Http\Request) and
        // returning WsBridge\Events\AuthResult, true/false, a user id, or
        // ['allow' => bool, 'user' => ..., 'groups' => [...], 'status' => ..., 'message' => ...].
        // null: every handshake is refused (403) if the bridge asks.
        // WsBridge\Hyperf\MiddlewareAuthorizer::class runs your middlewares.ws on each handshake.
        'authorizer' => null,
        // The middlewares MiddlewareAuthorizer runs; null: config('middlewares.ws').
        'handshake_middlewares' => null,
        // Claim each event before dispatching it, so that a batch the bridge sends again
        // (no answer within WSBRIDGE_EVENTS_TIMEOUT) runs once and in order:
        // true or 'memory' (this worker only), 'redis' (every worker: use it with more
        // than one worker), false, or the class of a WsBridge\Events\SeqStore.
        'deduplicate' => true,
        // Seconds a claim holds its connection if the worker running it dies
        // (longer than your slowest onOpen/onMessage/onClose).
        'lease' => 60,
    ],

    // Per-connection context (WsBridge\Context\ConnectionContext, injectable):
    // 'memory' (each worker its own, as Hyperf's WebSocketServer\Context) or
    // 'redis' (shared by every worker: a connection's events may reach any worker).
    'context' => [
        'store' => 'memory',
        'ttl' => 86400, // seconds a connection's values live without a write (its close releases them)
    ],

    // Redis, for 'redis' stores: a URL (served by the built-in client), or 'client':
    // the class of a \Redis (ext-redis) or predis client your container makes.
    'redis' => [
        'url' => getenv('WSBRIDGE_REDIS_URL') ?: 'redis://127.0.0.1:6379',
        'client' => null,
        'prefix' => 'wsbridge',
    ],

    // The bridge's admin API, to list its fds ($server->connections in a controller):
    // WSBRIDGE_ADMIN_ADDR and WSBRIDGE_ADMIN_TOKEN. Empty: listing throws UnsupportedException.
    'admin' => [
        'url' => '',
        'token' => getenv('WSBRIDGE_ADMIN_TOKEN') ?: '',
    ],
];
