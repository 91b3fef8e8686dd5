<?php

declare(strict_types=1);

namespace WsBridge\Events;

use Swoole\Http\Request;
use WsBridge\Context\ConnectionContext;
use WsBridge\Coroutine\Runtime;
use WsBridge\Coroutine\Runtimes;
use WsBridge\Exception\ConfigurationException;
use WsBridge\Exception\InvalidArgumentException;
use WsBridge\Exception\InvalidRequestException;
use WsBridge\Exception\RequestRejectedException;
use WsBridge\Exception\WsBridgeException;
use WsBridge\Sender;

/**
 * Receives what the bridge posts to WSBRIDGE_EVENTS_URL and
 * WSBRIDGE_EVENTS_AUTH_URL (docs/PROTOCOL.md, "Events" and "Handshake
 * authorization") and hands it to a Hyperf-style WebSocket controller:
 *
 *   onOpen($server, Swoole\Http\Request $request)
 *   onMessage($server, Swoole\WebSocket\Frame $frame)
 *   onClose($server, int $fd, int $reactorId)
 *
 * $server is an Events\Server (push, disconnect, exist, ...) over the
 * Sender; $server->event() is the event being dispatched (close code and
 * reason, seq, user). With withServerStyle(STYLE_COROUTINE) it is, as under
 * Hyperf's coroutine server, the connection's Swoole\Http\Response (a
 * ConnectionResponse: push($data), close()). A controller may leave any of
 * the three out.
 *
 * handle() takes the raw body and headers and answers:
 *
 * | answer | when |
 * |--------|------|
 * | 204 | a batch was dispatched (controller exceptions included: reported, not retried) |
 * | 200 + JSON | an auth request was answered (allow, or deny with its status) |
 * | 400 | malformed or hostile: not JSON, too deep, over the size limit, wrong shapes, missing fields, unknown event types or kinds, invalid fds; nothing is dispatched |
 * | 401 | signature missing (with a secret set), malformed or wrong; timestamp missing or more than 300 s away |
 * | 500 | the authorizer threw or answered nonsense (the bridge refuses that handshake with 503) |
 *
 * The events of one fd are dispatched in order; under a coroutine runtime
 * (Swoole) the events of different fds run at once, each fd in a coroutine
 * of its own. An exception thrown by the controller is reported
 * (withErrorHandler / withLogger; error_log by default) and the next event
 * goes on, as Hyperf logs a controller's exception and keeps the
 * connection. Delivery is at least once: the bridge sends a batch again
 * when it got no 2xx in time; withSeqStore() claims each event before it is
 * dispatched, skips those dispatched before, and answers 503 (the bridge
 * retries later) while another delivery still runs an event of the same fd.
 *
 * Before each event, the connection context (withContext(); Hyperf's
 * coroutine context value "ws.fd", which Hyperf\WebSocketServer\Context
 * reads) is set to the event's fd; after a close event both are released.
 * withRoute() gives a path its own controller, as Router::addServer routes do.
 *
 * Immutable: the with*() methods return a copy.
 */
final class EventHandler
{
    public const DEFAULT_MAX_BODY_SIZE = 8 << 20;

    private readonly Server $server;
    /** @var list<string> */
    private array $secrets = [];
    private int $maxBodySize = self::DEFAULT_MAX_BODY_SIZE;
    private int $tolerance = Signature::DEFAULT_TOLERANCE;
    /** @var (\Closure(Request): mixed)|null */
    private ?\Closure $authorizer = null;
    /** @var (\Closure(\Throwable, ?Event): void)|null */
    private ?\Closure $onError = null;
    private ?SeqStore $seqStore = null;
    private float $lease = 60.0;
    /** @var \Closure(): int */
    private \Closure $clock;
    private ConnectionContext $context;
    private Runtime $runtime;
    /** @var array<string, object> path => controller */
    private array $routes = [];
    private string $serverStyle = self::STYLE_ASYNC;
    /** @var (\Closure(Request): object)|false|null null: Hyperf's Request when installed; false: off */
    private \Closure|false|null $handshakeRequest = null;

    /** Hyperf's default server (Hyperf\Server\Server): $server is the Swoole\WebSocket\Server (an Events\Server). */
    public const STYLE_ASYNC = 'async';
    /** Hyperf\Server\CoroutineServer: $server is the connection's Swoole\Http\Response (a ConnectionResponse). */
    public const STYLE_COROUTINE = 'coroutine';

    /** The context key under which the open event's path is kept, for routing the fd's later events. */
    public const PATH_KEY = 'wsbridge.path';
    private const HYPERF_WS_CONTEXT = 'Hyperf\WebSocketServer\Context';
    private const HYPERF_CONTEXT = 'Hyperf\Context\Context';
    /** Hyperf's PSR-7 request (hyperf/http-message), which Hyperf's RequestContext accepts. */
    public const HYPERF_PSR_REQUEST = 'Hyperf\HttpMessage\Server\Request';
    /** The coroutine context key of the current request (Hyperf\Context\RequestContext). */
    public const REQUEST_KEY = 'Psr\Http\Message\ServerRequestInterface';
    /** What Hyperf\HttpServer\Request caches of the current request in the coroutine context. */
    private const PARSED_DATA_KEY = 'http.request.parsedData';
    private const REQUEST_PROPERTIES_PREFIX = 'Hyperf\HttpServer\Request.properties.';

    /**
     * @param object        $controller a WebSocket controller with onOpen, onMessage and/or onClose
     * @param Sender|Server $server     what the controller's $server sends through
     */
    public function __construct(private readonly object $controller, Sender|Server $server)
    {
        self::checkController($controller);
        $this->server = $server instanceof Server ? $server : new Server($server);
        $this->clock = static fn (): int => \time();
        $this->context = new ConnectionContext();
        $this->runtime = Runtimes::detect();
    }

    private static function checkController(object $controller): void
    {
        if (!\is_callable([$controller, 'onOpen']) && !\is_callable([$controller, 'onMessage']) && !\is_callable([$controller, 'onClose'])) {
            throw new InvalidArgumentException(\get_class($controller) . ' has none of onOpen, onMessage, onClose');
        }
    }

    /**
     * Connections whose handshake path is $path go to $controller; other
     * paths to the controller given to the constructor. The open event's
     * path is kept in the connection context (PATH_KEY): with a shared
     * context store, any worker routes the fd's later events; else a worker
     * that did not see the open event asks the bridge (Sender.Info), and a
     * close event it cannot place goes to the default controller.
     */
    public function withRoute(string $path, object $controller): self
    {
        self::checkController($controller);
        $clone = clone $this;
        $clone->routes[$path] = $controller;
        return $clone;
    }

    /**
     * What controllers get as $server, as Hyperf's server styles give it:
     * STYLE_ASYNC (the default, Hyperf\Server\Server): an Events\Server,
     * a Swoole\WebSocket\Server that pushes to any fd;
     * STYLE_COROUTINE (Hyperf\Server\CoroutineServer): a
     * ConnectionResponse, the event's connection as a Swoole\Http\Response
     * (push($data) and close() without an fd).
     */
    public function withServerStyle(string $style): self
    {
        if ($style !== self::STYLE_ASYNC && $style !== self::STYLE_COROUTINE) {
            throw new InvalidArgumentException("unknown server style {$style}: want async or coroutine");
        }
        $clone = clone $this;
        $clone->serverStyle = $style;
        return $clone;
    }

    public function serverStyle(): string
    {
        return $this->serverStyle;
    }

    /**
     * The handshake as the current request while onOpen runs, as Hyperf's
     * WebSocket server has it (hyperf/hyperf v3.1.71 and v3.2.4
     * src/websocket-server/src/Server.php, initRequest): Hyperf's coroutine
     * context value Psr\Http\Message\ServerRequestInterface (what the
     * injected Hyperf\HttpServer\Contract\RequestInterface reads) is the
     * handshake's PSR-7 request (path, query, headers, cookies, remote
     * address in the server params) during onOpen, and the request of the
     * events POST again after; Hyperf\HttpServer\Request's cached input and
     * path are cleared around it. Unlike Hyperf, the handshake is not kept
     * in Hyperf\WebSocketServer\Context for the later events: that is
     * worker memory, and the close event that would release it may reach
     * another worker.
     *
     * $factory makes the PSR-7 request from the handshake's
     * Swoole\Http\Request. null (the default): Hyperf's own
     * Hyperf\HttpMessage\Server\Request::loadFromSwooleRequest, when it is
     * installed (hyperf/http-server requires it; Hyperf's RequestContext
     * accepts only its kind, a Swow ServerRequestPlusInterface); false: off.
     *
     * @param (callable(Request): object)|false|null $factory
     */
    public function withHandshakeRequest(callable|false|null $factory): self
    {
        $clone = clone $this;
        $clone->handshakeRequest = \is_callable($factory) ? \Closure::fromCallable($factory) : $factory;
        return $clone;
    }

    /**
     * The connection context the handler keeps current (a MemoryContextStore
     * by default: per worker; give it a RedisContextStore to share it).
     */
    public function withContext(ConnectionContext $context): self
    {
        $clone = clone $this;
        $clone->context = $context;
        return $clone;
    }

    public function context(): ConnectionContext
    {
        return $this->context;
    }

    /**
     * The coroutine runtime that runs the events of different fds at once
     * (Runtimes::detect() by default).
     */
    public function withRuntime(Runtime $runtime): self
    {
        $clone = clone $this;
        $clone->runtime = $runtime;
        return $clone;
    }

    /**
     * @param array{secret?: string|list<string>|false|null, max_body_size?: int, tolerance?: int, authorizer?: callable|null, on_error?: callable|null, seq_store?: SeqStore|null, server_style?: string} $options
     */
    public static function create(object $controller, Sender|Server $server, array $options = []): self
    {
        $handler = new self($controller, $server);
        if (isset($options['secret']) && $options['secret'] !== false) { // false: getenv() of an unset variable
            $handler = $handler->withSecret($options['secret']);
        }
        if (isset($options['max_body_size'])) {
            $handler = $handler->withMaxBodySize((int) $options['max_body_size']);
        }
        if (isset($options['tolerance'])) {
            $handler = $handler->withTolerance((int) $options['tolerance']);
        }
        if (isset($options['authorizer'])) {
            $handler = $handler->withAuthorizer($options['authorizer']);
        }
        if (isset($options['on_error'])) {
            $handler = $handler->withErrorHandler($options['on_error']);
        }
        if (isset($options['seq_store'])) {
            $handler = $handler->withSeqStore($options['seq_store']);
        }
        if (isset($options['server_style'])) {
            $handler = $handler->withServerStyle((string) $options['server_style']);
        }
        return $handler;
    }

    /**
     * WSBRIDGE_EVENTS_SECRET. With a secret, unsigned requests are refused;
     * several secrets are accepted while one is being rotated. null or ''
     * accepts unsigned requests: only for an endpoint no one else can reach.
     *
     * @param string|list<string>|null $secret
     */
    public function withSecret(string|array|null $secret): self
    {
        $secrets = \array_values(\array_filter((array) $secret, static fn ($s): bool => $s !== ''));
        foreach ($secrets as $s) {
            if (!\is_string($s)) {
                throw new InvalidArgumentException('secrets must be strings');
            }
        }
        $clone = clone $this;
        $clone->secrets = $secrets;
        return $clone;
    }

    public function isSigned(): bool
    {
        return $this->secrets !== [];
    }

    /**
     * The largest body accepted (8 MiB by default); larger gets 400. It must
     * hold the bridge's largest batch (WSBRIDGE_EVENTS_BATCH_BYTES) and its
     * largest message, base64-encoded (4/3 of WSBRIDGE_MAX_MESSAGE_SIZE).
     */
    public function withMaxBodySize(int $bytes): self
    {
        if ($bytes < 1) {
            throw new InvalidArgumentException('the body size limit must be positive');
        }
        $clone = clone $this;
        $clone->maxBodySize = $bytes;
        return $clone;
    }

    public function maxBodySize(): int
    {
        return $this->maxBodySize;
    }

    /**
     * How far (seconds) a request's timestamp may be from this clock: 300.
     */
    public function withTolerance(int $seconds): self
    {
        if ($seconds < 0) {
            throw new InvalidArgumentException('the tolerance must not be negative');
        }
        $clone = clone $this;
        $clone->tolerance = $seconds;
        return $clone;
    }

    /**
     * Answers auth requests: called with the handshake as a
     * Swoole\Http\Request (fd 0: no connection yet), it returns an
     * AuthResult or a shorthand (see AuthResult::from). Without an
     * authorizer every handshake is refused with 403.
     *
     * @param callable(Request): mixed $authorizer
     */
    public function withAuthorizer(?callable $authorizer): self
    {
        $clone = clone $this;
        $clone->authorizer = $authorizer === null ? null : \Closure::fromCallable($authorizer);
        return $clone;
    }

    /**
     * Called with every exception: a controller's or authorizer's (with its
     * event, or null for an auth request) and the reason a request was
     * refused (a RequestRejectedException, with null).
     *
     * @param callable(\Throwable, ?Event): void $onError
     */
    public function withErrorHandler(?callable $onError): self
    {
        $clone = clone $this;
        $clone->onError = $onError === null ? null : \Closure::fromCallable($onError);
        return $clone;
    }

    /**
     * Reports to a PSR-3 logger (any object with error() and warning(), such
     * as Hyperf's StdoutLoggerInterface): refused requests as warnings,
     * controller and authorizer exceptions as errors.
     */
    public function withLogger(object $logger): self
    {
        if (!\is_callable([$logger, 'error']) || !\is_callable([$logger, 'warning'])) {
            throw new InvalidArgumentException('the logger needs error() and warning() methods (PSR-3)');
        }
        return $this->withErrorHandler(static function (\Throwable $e, ?Event $event) use ($logger): void {
            if ($e instanceof RequestRejectedException) {
                $logger->warning("wsbridge: refused a request from the bridge ({$e->getStatus()}): {$e->getMessage()}");
                return;
            }
            $logger->error('wsbridge: ' . self::describe($e, $event), ['exception' => $e]);
        });
    }

    /**
     * Claims each event before dispatching it: skips events dispatched
     * before, holds back a redelivery while the first still runs (503).
     * $lease: how long a claim holds its fd if its holder dies (longer than
     * the slowest controller call).
     */
    public function withSeqStore(?SeqStore $store, float $lease = 60.0): self
    {
        if ($lease <= 0) {
            throw new InvalidArgumentException('the lease must be positive');
        }
        $clone = clone $this;
        $clone->seqStore = $store;
        $clone->lease = $lease;
        return $clone;
    }

    /**
     * The clock that timestamps are checked against (unix seconds).
     *
     * @param callable(): int $clock
     */
    public function withClock(callable $clock): self
    {
        $clone = clone $this;
        $clone->clock = \Closure::fromCallable($clock);
        return $clone;
    }

    public function server(): Server
    {
        return $this->server;
    }

    /**
     * Handles one request of the bridge.
     *
     * @param string                               $body    the raw body, as received
     * @param array<string, string|list<string>>   $headers any case; a list's values are joined with ", "
     */
    public function handle(string $body, array $headers): Response
    {
        try {
            if (\strlen($body) > $this->maxBodySize) {
                throw new InvalidRequestException('the body of ' . \strlen($body) . " bytes is over the limit of {$this->maxBodySize} bytes");
            }
            $h = self::normalizeHeaders($headers);
            if ($this->secrets !== []) {
                Signature::verify($this->secrets, $body, $h['x-wsbridge-timestamp'] ?? null, $h['x-wsbridge-signature'] ?? null, ($this->clock)(), $this->tolerance);
            }
            $kind = $h['x-wsbridge-kind'] ?? '';
            return match ($kind) {
                'events' => $this->events(Parser::batch($body)),
                'auth' => $this->auth(Parser::handshake($body)),
                '' => throw new InvalidRequestException('no X-Wsbridge-Kind header'),
                default => throw new InvalidRequestException('unknown X-Wsbridge-Kind; want events or auth'),
            };
        } catch (RequestRejectedException $e) {
            $this->report($e, null);
            return Response::error($e->getStatus(), $e->getMessage());
        }
    }

    /**
     * @param list<Event> $events
     */
    private function events(array $events): Response
    {
        /** @var array<int, true> $held fds whose events a claim held back */
        $held = [];
        if ($this->runtime->id() < 1) {
            // No coroutines: the batch's order, as it came.
            foreach ($events as $event) {
                if (!isset($held[$event->fd]) && !$this->runOne($event)) {
                    $held[$event->fd] = true;
                }
            }
        } else {
            $byFd = [];
            foreach ($events as $event) {
                $byFd[$event->fd][] = $event;
            }
            $tasks = [];
            foreach ($byFd as $fd => $list) {
                $tasks[] = function () use ($fd, $list, &$held): void {
                    foreach ($list as $event) {
                        if (!$this->runOne($event)) {
                            $held[$fd] = true;
                            return;
                        }
                    }
                };
            }
            $this->runtime->parallel($tasks);
        }
        if ($held !== []) {
            $fds = \array_keys($held);
            \sort($fds);
            return Response::error(503, 'events of fd ' . \implode(', ', $fds) . ' are being dispatched by another delivery; send again later');
        }
        return Response::noContent();
    }

    /**
     * Claims and dispatches one event; false when the claim held it back
     * (the fd's later events must wait too).
     */
    private function runOne(Event $event): bool
    {
        if ($this->seqStore !== null) {
            try {
                $claim = $this->seqStore->claim($event, $this->lease);
            } catch (WsBridgeException $e) {
                $this->report($e, $event);
                return false; // the store is down: let the bridge retry
            }
            if ($claim === SeqStore::SKIP) {
                return true;
            }
            if ($claim === SeqStore::BUSY) {
                return false;
            }
        }
        try {
            $this->dispatch($event);
        } catch (\Throwable $e) {
            $this->report($e, $event);
        }
        try {
            $this->seqStore?->complete($event);
        } catch (WsBridgeException $e) {
            $this->report($e, $event);
        }
        return true;
    }

    private function dispatch(Event $event): void
    {
        $this->context->enter($event->fd);
        $c = $this->controllerFor($event);
        $server = $this->serverStyle === self::STYLE_COROUTINE
            ? $this->server->withEvent($event)->connection($event->fd)
            : $this->server->withEvent($event);
        switch ($event->type) {
            case Event::OPEN:
                if ($this->routes !== []) {
                    $this->context->set(self::PATH_KEY, $event->path);
                }
                if (\is_callable([$c, 'onOpen'])) {
                    $request = SwooleObjects::request($event->fd, $event->path, $event->query, $event->headers, $event->remoteAddr, $event->time);
                    $this->asCurrentRequest($request, $event, static fn () => $c->onOpen($server, $request));
                }
                return;
            case Event::MESSAGE:
                if (\is_callable([$c, 'onMessage'])) {
                    $c->onMessage($server, SwooleObjects::frame($event->fd, $event->data, $event->opcode));
                }
                return;
            case Event::CLOSE:
                try {
                    if (\is_callable([$c, 'onClose'])) {
                        // Swoole's reactor id is negative when the server closed the connection.
                        $c->onClose($server, $event->fd, $event->by === 'server' ? -1 : 0);
                    }
                } finally {
                    // As Hyperf does after onClose: the connection's context goes.
                    $this->context->release($event->fd);
                    if (\class_exists(self::HYPERF_WS_CONTEXT)) {
                        (self::HYPERF_WS_CONTEXT)::release($event->fd);
                    }
                }
                return;
        }
    }

    /**
     * Runs $call with the handshake as Hyperf's current request (see
     * withHandshakeRequest), then puts back what the coroutine context held.
     */
    private function asCurrentRequest(Request $request, Event $event, \Closure $call): void
    {
        $factory = $this->handshakeRequest;
        if ($factory === null && \class_exists(self::HYPERF_PSR_REQUEST)) {
            $factory = static fn (Request $r): object => (self::HYPERF_PSR_REQUEST)::loadFromSwooleRequest($r);
        }
        if (!$factory instanceof \Closure || !\class_exists(self::HYPERF_CONTEXT)) {
            $call();
            return;
        }
        try {
            $psr = $factory($request);
        } catch (\Throwable $e) {
            // onOpen still runs, with the context as it was.
            $this->report($e, $event);
            $call();
            return;
        }
        $context = self::HYPERF_CONTEXT;
        $saved = [];
        foreach (self::requestKeys() as $key) {
            if ($context::has($key)) {
                $saved[$key] = $context::get($key);
            }
            $context::destroy($key);
        }
        $context::set(self::REQUEST_KEY, $psr);
        try {
            $call();
        } finally {
            foreach (self::requestKeys() as $key) {
                $context::destroy($key);
            }
            foreach ($saved as $key => $value) {
                $context::set($key, $value);
            }
        }
    }

    /**
     * The coroutine context keys that speak of the current request: the
     * request itself, Hyperf\HttpServer\Request's parsed input and cached
     * properties (path info, request URI).
     *
     * @return list<string>
     */
    private static function requestKeys(): array
    {
        $keys = [self::REQUEST_KEY, self::PARSED_DATA_KEY];
        foreach ((self::HYPERF_CONTEXT)::getContainer() ?? [] as $key => $_) {
            if (\is_string($key) && \str_starts_with($key, self::REQUEST_PROPERTIES_PREFIX)) {
                $keys[] = $key;
            }
        }
        return $keys;
    }

    private function controllerFor(Event $event): object
    {
        if ($this->routes === []) {
            return $this->controller;
        }
        // Every event carries its connection's path (an older bridge: only
        // the open event; then the connection context has it).
        $path = $event->path !== '' ? $event->path : $this->context->get(self::PATH_KEY);
        if ($path === null && $event->type === Event::MESSAGE) {
            $path = $this->server->sender()->info($event->fd)['path'] ?? null;
            if (\is_string($path)) {
                $this->context->set(self::PATH_KEY, $path);
            }
        }
        return $this->routes[$path] ?? $this->controller;
    }

    /**
     * @param array{node: int, path: string, query: string, headers: array<string, list<string>>, remote_addr: string} $handshake
     */
    private function auth(array $handshake): Response
    {
        if ($this->authorizer === null) {
            $this->report(new ConfigurationException('an auth request arrived and no authorizer is configured: the handshake is refused'), null);
            return Response::json(200, AuthResult::deny(403, 'no authorizer is configured')->toArray());
        }
        $request = SwooleObjects::request(0, $handshake['path'], $handshake['query'], $handshake['headers'], $handshake['remote_addr'], ($this->clock)() * 1000);
        try {
            $result = AuthResult::from(($this->authorizer)($request));
        } catch (\Throwable $e) {
            $this->report($e, null);
            return Response::error(500, 'the authorizer failed');
        }
        return Response::json(200, $result->toArray());
    }

    private function report(\Throwable $e, ?Event $event): void
    {
        try {
            if ($this->onError !== null) {
                ($this->onError)($e, $event);
                return;
            }
        } catch (\Throwable $inner) {
            \error_log('wsbridge: the error handler threw ' . \get_class($inner) . ': ' . $inner->getMessage());
        }
        if ($e instanceof RequestRejectedException) {
            \error_log("wsbridge: refused a request from the bridge ({$e->getStatus()}): {$e->getMessage()}");
            return;
        }
        \error_log('wsbridge: ' . self::describe($e, $event) . "\n" . $e->getTraceAsString());
    }

    private static function describe(\Throwable $e, ?Event $event): string
    {
        $what = $event === null ? 'handshake authorization' : 'the ' . $event->describe();
        return "{$what} failed: " . \get_class($e) . ": {$e->getMessage()}";
    }

    /**
     * @param array<mixed> $headers
     * @return array<string, string>
     */
    private static function normalizeHeaders(array $headers): array
    {
        $out = [];
        foreach ($headers as $name => $value) {
            if (\is_array($value)) {
                $value = \implode(', ', \array_map('strval', $value));
            }
            $name = \strtolower((string) $name);
            $value = \trim((string) $value);
            $out[$name] = isset($out[$name]) ? $out[$name] . ', ' . $value : $value;
        }
        return $out;
    }
}
