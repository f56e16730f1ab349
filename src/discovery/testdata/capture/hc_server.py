"""Health-check targets of the `hc` cluster, one per address on port 7100:
.61 and .65 answer 200, .62 200 with x-envoy-degraded, .63 503 with
x-envoy-immediate-health-check-fail, .64 never answers (the check times out)."""
import http.server
import socketserver
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        ip = self.server.server_address[0]
        if ip == "127.0.0.64":
            time.sleep(3600)
            return
        if ip == "127.0.0.63":
            self.send_response(503)
            self.send_header("x-envoy-immediate-health-check-fail", "true")
        else:
            self.send_response(200)
            if ip == "127.0.0.62":
                self.send_header("x-envoy-degraded", "true")
        self.send_header("content-length", "0")
        self.end_headers()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


for last in (61, 62, 63, 64, 65):
    server = Server((f"127.0.0.{last}", 7100), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
