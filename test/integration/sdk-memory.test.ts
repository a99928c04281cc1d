import { startService } from '../helpers/service';
import { describeSdkBehaviour } from './sdk-behaviour';

describeSdkBehaviour('memory bus', (overrides) => startService(overrides));
