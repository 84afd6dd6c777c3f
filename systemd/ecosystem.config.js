// pm2 process file: `pm2 start systemd/ecosystem.config.js`.
// kill_timeout must exceed SHUTDOWN_TIMEOUT_MS so in-flight jobs finish (or are requeued)
// before pm2 sends SIGKILL.
module.exports = {
  apps: [
    {
      name: "workhorse",
      cwd: "/opt/workhorse",
      script: ".venv/bin/workhorse",
      args: "run",
      interpreter: "none",
      exec_mode: "fork",
      instances: 1,
      autorestart: true,
      max_restarts: 10,
      min_uptime: "30s",
      restart_delay: 5000,
      kill_timeout: 45000,
      // pm2 sends SIGINT by default; the worker treats SIGINT like SIGTERM.
      env: {
        SHUTDOWN_TIMEOUT_MS: "30000",
        HEALTH_PORT: "3100",
        LOG_FORMAT: "json",
      },
    },
  ],
};
