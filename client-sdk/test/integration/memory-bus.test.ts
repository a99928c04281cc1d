import { startService } from '../../../test/helpers/service';
import { describeSdkBehaviour } from './behaviour';

describeSdkBehaviour('memory bus', (overrides) => startService(overrides));
