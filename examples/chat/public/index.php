<?php

declare(strict_types=1);

/*
 * The chat example's front controller, the router script of PHP's built-in
 * server (see ../README.md):
 *
 *   GET  /                  the chat page (chat.html), with chat.js and chat.css
 *   POST /wsbridge/events   the events the bridge posts (WSBRIDGE_EVENTS_URL),
 *                           handed to Chat\ChatController
 *
 * Settings, from the environment of `php -S`:
 *   WSBRIDGE_RPC_ADDR       the bridge's RPC address (tcp://127.0.0.1:6001)
 *   WSBRIDGE_EVENTS_SECRET  the bridge's WSBRIDGE_EVENTS_SECRET (unset: unsigned requests are accepted)
 *   CHAT_STATE_DIR          where the connection context (names and rooms) is kept (a directory in the system's temp dir)
 */

use Chat\ChatController;
use Chat\FileContextStore;
use WsBridge\Context\ConnectionContext;
use WsBridge\Events\Endpoint;
use WsBridge\Events\EventHandler;
use WsBridge\Sender;

$path = \parse_url($_SERVER['REQUEST_URI'] ?? '/', \PHP_URL_PATH) ?: '/';

// php -S logs no request line for the requests a router script answers:
// this one does, in php -S's own format.
$logRequest = static function (int $status) use ($path): void {
    \file_put_contents('php://stderr', \sprintf(
        "[%s] %s:%s [%d]: %s %s\n",
        \date('D M j H:i:s Y'),
        $_SERVER['REMOTE_ADDR'] ?? '-',
        $_SERVER['REMOTE_PORT'] ?? '-',
        $status,
        $_SERVER['REQUEST_METHOD'] ?? '-',
        $path,
    ));
};

$static = [
    '/' => ['chat.html', 'text/html; charset=utf-8'],
    '/chat.html' => ['chat.html', 'text/html; charset=utf-8'],
    '/chat.js' => ['chat.js', 'text/javascript; charset=utf-8'],
    '/chat.css' => ['chat.css', 'text/css; charset=utf-8'],
];
if (isset($static[$path])) {
    [$file, $type] = $static[$path];
    \header("Content-Type: {$type}");
    \header('Cache-Control: no-store');
    \readfile(__DIR__ . '/' . $file);
    $logRequest(200);
    return true;
}

if ($path !== '/wsbridge/events') {
    \http_response_code(404);
    \header('Content-Type: text/plain; charset=utf-8');
    echo "not found\n";
    $logRequest(404);
    return true;
}

$autoload = \dirname(__DIR__, 3) . '/php-client/vendor/autoload.php';
if (!\is_file($autoload)) {
    $help = "wsbridge chat: {$autoload} is missing: run `composer dump-autoload --dev` in php-client/ first";
    \error_log($help);
    \http_response_code(500);
    \header('Content-Type: text/plain; charset=utf-8');
    echo $help, "\n";
    $logRequest(500);
    return true;
}
require $autoload;
require_once \dirname(__DIR__) . '/src/engine.php';
require_once \dirname(__DIR__) . '/src/FileContextStore.php';
require_once \dirname(__DIR__) . '/src/ChatController.php';

$stateDir = \getenv('CHAT_STATE_DIR') ?: \sys_get_temp_dir() . '/wsbridge-chat-' . ($_SERVER['SERVER_PORT'] ?? '0');
// Every request of php -S starts afresh: the connection context lives in files.
$context = new ConnectionContext(new FileContextStore($stateDir));
$handler = EventHandler::create(
    new ChatController($context),
    Sender::create(\getenv('WSBRIDGE_RPC_ADDR') ?: 'tcp://127.0.0.1:6001'),
    ['secret' => \getenv('WSBRIDGE_EVENTS_SECRET')],
)->withContext($context);
$logRequest(Endpoint::serve($handler)->status);
return true;
