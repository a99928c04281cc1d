import { DEFAULT_CONFIG } from '../../server/config';
import { startupWarnings } from '../../server/startup-warnings';

describe('startupWarnings', () => {
  const codes = (config: Partial<typeof DEFAULT_CONFIG>, production = true) =>
    startupWarnings({ ...DEFAULT_CONFIG, ...config }, { production }).map((warning) => `${warning.level} ${warning.warning}`);

  it('says nothing outside production', () => {
    expect(codes({ enableSynthetic: true }, false)).toEqual([]);
  });

  it('shouts when auth is off in production, and warns of public metrics and the synthetic workflow', () => {
    expect(codes({ enableSynthetic: true })).toEqual(['error auth_off', 'warn metrics_on_api_port', 'warn synthetic_enabled']);
  });

  it('is quiet for a production configuration with auth and METRICS_PORT', () => {
    expect(codes({ apiKey: 'k', metricsPort: 9464 })).toEqual([]);
    expect(codes({ jwtSecret: 's', metricsPort: 9464 })).toEqual([]);
  });
});
