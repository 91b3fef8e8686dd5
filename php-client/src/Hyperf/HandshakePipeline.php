<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;
use Psr\Http\Server\RequestHandlerInterface;

/**
 * Runs PSR-15 middlewares in order for MiddlewareAuthorizer; the request
 * that gets through all of them reaches the end, which answers with an
 * empty response and remembers the request (its attributes carry the user
 * and groups). Loaded only when PSR-15 is installed (with Hyperf).
 *
 * @internal
 */
final class HandshakePipeline implements RequestHandlerInterface
{
    private ?ServerRequestInterface $reached = null;
    private ?ResponseInterface $allowed = null;

    /**
     * @param list<object> $middlewares Psr\Http\Server\MiddlewareInterface
     * @param \Closure(): ResponseInterface $newResponse
     */
    public function __construct(private readonly array $middlewares, private readonly \Closure $newResponse, private readonly int $index = 0)
    {
    }

    public function handle(ServerRequestInterface $request): ResponseInterface
    {
        if (!isset($this->middlewares[$this->index])) {
            $this->reached = $request;
            return $this->allowed = ($this->newResponse)();
        }
        $next = new self($this->middlewares, $this->newResponse, $this->index + 1);
        try {
            return $this->middlewares[$this->index]->process($request, $next);
        } finally {
            $this->reached ??= $next->reached;
            $this->allowed ??= $next->allowed;
        }
    }

    public function reached(): ?ServerRequestInterface
    {
        return $this->reached;
    }

    public function allowed(): ?ResponseInterface
    {
        return $this->allowed;
    }
}
