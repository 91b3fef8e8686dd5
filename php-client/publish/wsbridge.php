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
        'authorizer' => null,
        // Skip events already dispatched when the bridge redelivers a batch:
        // true (this worker's memory), false, or the class of a WsBridge\Events\SeqStore.
        'deduplicate' => true,
    ],
];
