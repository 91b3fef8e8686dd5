<?php

declare(strict_types=1);

// The events endpoint of bench/soak under php -S: it acknowledges every
// batch with 204 after appending one line per event to SOAK_EVENTS:
//   o <fd> <seq> <client id from the query's "soak", or - >
//   m <fd> <seq>
//   c <fd> <seq> <code>
// If the file SOAK_DIR/slow exists, it holds the milliseconds to sleep
// before doing so (the "PHP is slow" fault). No signature check: the
// endpoint listens on loopback for one run.

$body = \file_get_contents('php://input');
$batch = \json_decode($body === false ? '' : $body, true);
if (!\is_array($batch) || !\is_array($batch['events'] ?? null)) {
    \http_response_code(400);
    return;
}
$slow = \getenv('SOAK_DIR') . '/slow';
if (\is_file($slow)) {
    \usleep(1000 * (int) \file_get_contents($slow));
}
$lines = '';
foreach ($batch['events'] as $e) {
    $fd = (int) ($e['fd'] ?? 0);
    $seq = (int) ($e['seq'] ?? 0);
    switch ($e['type'] ?? '') {
        case 'open':
            \parse_str((string) ($e['query'] ?? ''), $q);
            $id = $q['soak'] ?? '-';
            $lines .= "o {$fd} {$seq} " . (\is_string($id) && \ctype_digit($id) ? $id : '-') . "\n";
            break;
        case 'message':
            $lines .= "m {$fd} {$seq}\n";
            break;
        case 'close':
            $lines .= "c {$fd} {$seq} " . (int) ($e['code'] ?? 0) . "\n";
            break;
    }
}
\file_put_contents((string) \getenv('SOAK_EVENTS'), $lines, \FILE_APPEND | \LOCK_EX);
\http_response_code(204);
