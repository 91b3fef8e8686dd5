<?php

declare(strict_types=1);

// A misbehaving stand-in for the bridge, for the protocol checks the real
// bridge never gives cause for. It prints its address, accepts one
// connection, reads one request frame and answers as told by argv[1]:
//   wrong-seq   a well-formed reply with the request's sequence + 1
//   bad-crc     a reply whose header CRC is wrong
//   hang-up     closes without a reply
//   silent      never answers (the client's read timeout must fire)

require __DIR__ . '/../../vendor/autoload.php';

use WsBridge\Goridge\Frame;

$server = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
if ($server === false) {
    fwrite(STDERR, "listen: {$errstr}\n");
    exit(1);
}
echo 'tcp://' . stream_socket_get_name($server, false), "\n";
$conn = stream_socket_accept($server, 30);
if ($conn === false) {
    exit(1);
}
$head = fread($conn, Frame::RPC_HEADER_SIZE);
$h = Frame::decodeHeader($head);
$payload = '';
while (strlen($payload) < $h['payloadLen']) {
    $payload .= fread($conn, $h['payloadLen'] - strlen($payload));
}
$method = substr($payload, 0, $h['methodLen']);
switch ($argv[1] ?? '') {
    case 'wrong-seq':
        fwrite($conn, Frame::encode(Frame::CODEC_JSON, $h['seq'] + 1, $method, 'true'));
        break;
    case 'bad-crc':
        $reply = Frame::encode(Frame::CODEC_JSON, $h['seq'], $method, 'true');
        $reply[7] = chr(ord($reply[7]) ^ 0xff);
        fwrite($conn, $reply);
        break;
    case 'silent':
        sleep(30);
        break;
}
fclose($conn);
