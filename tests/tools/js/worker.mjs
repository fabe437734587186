// An ordinary Camunda 8 job worker, written with Camunda's own client
// (@camunda8/orchestration-cluster-api) and configured from the environment only:
// CAMUNDA_REST_ADDRESS, CAMUNDA_AUTH_STRATEGY=BASIC, CAMUNDA_BASIC_AUTH_USERNAME and
// CAMUNDA_BASIC_AUTH_PASSWORD. It takes `payment` jobs: an amount above 1000 is refused with the
// BPMN error NO_FUNDS, any other is paid and answered with a `receipt`; the first attempt at an
// amount of 13 fails (the bank is busy) and is retried. With PAYMENT_AMOUNTS
// (e.g. "300,1500") it also starts one `payment` instance per amount and publishes a message,
// printing one JSON line per call on stdout.
import createCamundaClient from '@camunda8/orchestration-cluster-api';

const camunda = createCamundaClient();
const say = (line) => console.log(JSON.stringify(line));
const busy = new Set();

const topology = await camunda.getTopology();
say({ topology: { brokers: topology.brokers.length, gatewayVersion: topology.gatewayVersion } });

camunda.createJobWorker({
  jobType: 'payment',
  workerName: 'js-payments',
  maxParallelJobs: 4,
  jobTimeoutMs: 30_000,
  pollTimeoutMs: 20_000,
  jobHandler: async (job) => {
    const { amount } = job.variables;
    if (amount > 1000) {
      say({ refused: job.jobKey, amount });
      return job.error({ errorCode: 'NO_FUNDS', errorMessage: `${amount} is over the limit` });
    }
    if (amount === 13 && !busy.has(job.processInstanceKey)) {
      busy.add(job.processInstanceKey);
      say({ failed: job.jobKey, amount, retries: job.retries });
      return job.fail({ errorMessage: 'the bank is busy', retries: job.retries - 1, retryBackOff: 100 });
    }
    say({ paid: job.jobKey, amount, currency: job.customHeaders.currency });
    return job.complete({ receipt: `R-${amount}` });
  },
});

for (const amount of (process.env.PAYMENT_AMOUNTS ?? '').split(',').filter(Boolean)) {
  const started = await camunda.createProcessInstance({
    processDefinitionId: 'payment',
    variables: { amount: Number(amount) },
  });
  say({ started: started.processInstanceKey, amount: Number(amount), version: started.processDefinitionVersion });
}
if (process.env.PAYMENT_AMOUNTS) {
  const published = await camunda.publishMessage({ name: 'payments-started', correlationKey: 'js', timeToLive: 0 });
  say({ published: published.messageKey });
}

const stop = () => {
  camunda.stopAllWorkers();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
